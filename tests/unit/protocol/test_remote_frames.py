"""Remote tracebacks: frames rebuilt as real tracebacks, shortened, capped; long
messages cut (`shoal.protocol.tracebacks`)."""

from __future__ import annotations

import traceback

from shoal.protocol.tracebacks import MAX_FRAMES, capped, rebuild, shorten, truncate

FRAMES = [
    ("/site/shoal/worker/server.py", 640, "_run"),
    ("/site/dask/_task_spec.py", 700, "__call__"),
    (__file__, 12, "user_function"),
    ("/site/pandas/core/frame.py", 10, "apply"),
    ("/site/pandas/core/apply.py", 20, "apply_standard"),
]
PATTERNS = [r"shoal[\\/](worker|graph)[\\/]", r"dask[\\/]_task_spec\.py", r"pandas[\\/]core[\\/]"]


def test_shorten_drops_machinery_but_keeps_the_raising_frame():
    assert shorten(FRAMES, PATTERNS) == [FRAMES[2], FRAMES[4]]
    assert shorten(FRAMES, []) == FRAMES
    assert shorten(FRAMES, False) == FRAMES
    assert shorten([], PATTERNS) == []


def test_rebuilt_frames_show_source_lines_without_carets():
    tb = rebuild([(__file__, 12, "user_function")])
    [frame] = traceback.extract_tb(tb)
    assert (frame.filename, frame.lineno, frame.name) == (__file__, 12, "user_function")
    text = "".join(traceback.format_tb(tb))
    assert "^" not in text
    assert text.splitlines()[1].strip() == open(__file__).read().splitlines()[11].strip()
    assert rebuild([("x.py", 0, "f"), ("y.py", "nan", "g")]) is None  # unusable frames are skipped


def test_capped_keeps_where_it_started_and_where_it_failed():
    frames = [("f.py", i + 1, f"r{i}") for i in range(1000)]
    out = capped(frames)
    assert len(out) == MAX_FRAMES
    assert out[0] == frames[0] and out[-1] == frames[-1]
    assert capped(frames[:5]) == frames[:5]


def test_truncate():
    e = ValueError("x" * 50)
    assert truncate(e, 100) is e
    assert truncate(e, 0) is e
    cut = truncate(e, 10)
    assert type(cut) is ValueError
    assert str(cut) == "x" * 10 + "... [50 characters, cut at shoal.admin.max-error-length=10]"

    class Picky(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    cut = truncate(Picky(1, "y" * 50), 10)
    assert type(cut) is RuntimeError and str(cut).startswith("Picky: (1, 'yyyyy")
