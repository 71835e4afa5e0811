"""Progress bars: `progress` over futures and collections, text and widget front ends."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import types
import uuid

import dask.array as da
import pytest
from task_functions import inc

from shoal import Client, LocalCluster, progress
from shoal.diagnostics.progressbar import MultiProgressBar, MultiProgressWidget, ProgressWidget, TextProgressBar

GATES: dict[str, threading.Event] = {}


def double(x):
    return 2 * x


def boom(x):
    raise ValueError(x)


def gated(gate, x):
    if not GATES[gate].wait(10):
        raise RuntimeError("gate never opened")
    return x


@pytest.fixture
def gate():
    name = uuid.uuid4().hex
    GATES[name] = threading.Event()
    yield name
    GATES.pop(name).set()


class Tty(io.StringIO):
    def isatty(self):
        return True


def no_watches_left(cluster):
    return not cluster.scheduler.state.observers and not cluster.scheduler.watches.watches


def test_blocking_text_bar_ends_at_100_percent(client, cluster, poll):
    out = io.StringIO()
    fs = client.map(inc, range(20))
    assert progress(fs, file=out) is None
    assert all(f.done() for f in fs)
    last = out.getvalue().splitlines()[-1]
    assert "100% Completed | 20/20" in last and "[" + "#" * 40 + "]" in last
    assert "\r" not in out.getvalue()  # not a terminal: plain lines only
    poll(lambda: no_watches_left(cluster))


def test_multi_shows_one_line_per_prefix_and_counts_dependencies(client):
    out = io.StringIO()
    xs = client.map(inc, range(4))
    ys = client.map(double, xs)
    progress(ys, file=out)
    final = out.getvalue().splitlines()[-3:]
    assert final[0].startswith("double") and "4/4" in final[0]
    assert final[1].startswith("inc") and "4/4" in final[1]
    assert "100% Completed | 8/8" in final[2]
    out = io.StringIO()
    progress(ys, file=out, multi=False)  # the incs are released: ys need nothing more
    [line] = out.getvalue().splitlines()
    assert "100% Completed | 4/4" in line
    out = io.StringIO()
    progress(ys, file=out, complete=False)  # nothing left to do
    assert "0/0" in out.getvalue() and "100%" in out.getvalue()


def test_persisted_collection(client):
    x = da.ones((40, 40), chunks=10).sum().persist()
    out = io.StringIO()
    progress(x, file=out)
    assert "100% Completed" in out.getvalue().splitlines()[-1]
    assert x.compute() == 1600


def test_errors_end_the_bar_and_are_shown(client):
    out = io.StringIO()
    bad = client.map(boom, range(3))
    good = client.map(inc, range(3))
    progress(bad, good, file=out)
    last = out.getvalue().splitlines()[-1]
    assert "6/6" in last and "3 erred" in last


def test_cancellation_ends_a_waiting_bar(client, cluster, gate, poll):
    f = client.submit(gated, gate, 1)
    out = io.StringIO()
    done = threading.Event()
    t = threading.Thread(target=lambda: (progress(f, file=out, interval="20ms"), done.set()))
    t.start()
    try:
        poll(lambda: cluster.scheduler.watches.watches)  # the bar is up
        client.cancel(f)
        assert done.wait(10)
    finally:
        GATES[gate].set()
        t.join(10)
    assert "1 cancelled" in out.getvalue().splitlines()[-1]


def test_terminal_bar_redraws_in_place_and_ends_with_a_newline(client):
    out = Tty()
    progress(client.map(inc, range(5)), client.map(double, range(5)), file=out)
    text = out.getvalue()
    assert "\r\x1b[2K" in text and text.endswith("\n")
    assert "100% Completed | 10/10" in text.rsplit("\r\x1b[2K", 1)[-1]


def test_bad_group_by():
    with pytest.raises(ValueError, match="group_by"):
        progress(group_by="nope")


def test_asynchronous_client_does_not_block(cluster_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **cluster_kwargs) as cl:
            async with Client(cl, asynchronous=True) as c:
                out = io.StringIO()
                fs = c.map(inc, range(10))
                bar = progress(fs, file=out)
                assert isinstance(bar, TextProgressBar)
                await bar
                assert bar.finished and bar.status == "finished"
                return out.getvalue()

    text = asyncio.run(asyncio.wait_for(main(), 30))
    assert "100% Completed | 10/10" in text


class _Widget:
    def __init__(self, *args, **kwargs):
        self.children = args[0] if args else ()
        self.value = kwargs.get("value", args[0] if args and isinstance(args[0], str) else None)
        self.bar_style = ""


@pytest.fixture
def fake_ipywidgets(monkeypatch):
    mod = types.ModuleType("ipywidgets")
    for name in ("FloatProgress", "HTML", "HBox", "VBox"):
        setattr(mod, name, type(name, (_Widget,), {}))
    monkeypatch.setitem(sys.modules, "ipywidgets", mod)
    return mod


def test_notebook_widget_returns_at_once_and_fills(client, fake_ipywidgets, gate, poll):
    ok = client.map(inc, range(3))
    bad = client.submit(boom, "<b>")
    slow = client.submit(gated, gate, 1)
    bar = progress(ok, bad, slow, notebook=True)
    assert isinstance(bar, MultiProgressWidget) and not bar.finished
    GATES[gate].set()
    poll(lambda: bar.finished)
    assert bar.status == "error"
    assert bar.bars["inc"].value == 1.0 and bar.bars["inc"].bar_style == "success"
    assert bar.bars["boom"].bar_style == "danger" and "1 erred" in bar.labels["boom"].value
    assert bar.bars["gated"].value == 1.0


def test_notebook_widget_with_real_ipywidgets_shows_erred_tasks_in_red(client, poll):
    ipywidgets = pytest.importorskip("ipywidgets", reason="ipywidgets is a test dependency")
    ok, bad = client.map(inc, range(3)), client.submit(boom, "<i>")
    bar = progress(ok, bad, notebook=True)
    assert isinstance(bar, MultiProgressWidget) and isinstance(bar.widget, ipywidgets.VBox)
    poll(lambda: bar.finished)
    assert isinstance(bar.bars["boom"], ipywidgets.FloatProgress)
    assert bar.bars["boom"].bar_style == "danger" and bar.bars["inc"].bar_style == "success"  # red and green
    assert "color: #d33" in bar.labels["boom"].value and "(1 erred)" in bar.labels["boom"].value
    assert "erred" not in bar.labels["inc"].value
    view = bar.widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in view  # what a notebook renders


def test_notebook_without_ipywidgets_falls_back_to_text(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    out = io.StringIO()
    assert progress(client.map(inc, range(3)), notebook=True, file=out) is None  # blocks, as in a terminal
    assert "100% Completed | 3/3" in out.getvalue()


def test_a_disconnecting_client_takes_its_watch_along(cluster, gate, poll):
    c2 = Client(cluster)
    try:
        f = c2.submit(gated, gate, 2)
        bar = TextProgressBar([f.key], c2, file=io.StringIO(), start=False)
        bar._start_in_background()
        poll(lambda: cluster.scheduler.watches.watches)
    finally:
        c2.close()
    poll(lambda: no_watches_left(cluster))


# the public classes, called as distributed's are ------------------------------------------


def test_text_bar_class_blocks_until_done(client):
    out = io.StringIO()
    fs = client.map(inc, range(10))
    bar = TextProgressBar(fs, file=out)  # start=True: blocks on a blocking client
    assert bar.finished and bar.status == "finished" and all(f.done() for f in fs)
    assert "100% Completed | 10/10" in out.getvalue().splitlines()[-1]


@pytest.mark.parametrize("how", ["address", "scheduler"])
def test_text_bar_with_keys_and_a_scheduler(client, cluster, how):
    fs = client.map(double, range(5))
    scheduler = cluster.scheduler_address if how == "address" else cluster.scheduler
    out = io.StringIO()
    bar = TextProgressBar([f.key for f in fs], scheduler=scheduler, file=out)
    assert bar.client is client  # the client of this process already connected there
    assert "100% Completed | 5/5" in out.getvalue()


def test_text_bar_connects_its_own_client_when_none_is_there(cluster):
    with Client(cluster, set_as_default=False) as c:
        fs = c.map(inc, range(4))
        out = io.StringIO()
        bar = TextProgressBar([f.key for f in fs], scheduler=cluster.scheduler, file=out)
        assert bar.client is not c and bar.client.status == "closed"  # closed at the end
        assert "100% Completed | 4/4" in out.getvalue()


def test_multi_progress_bar_has_a_line_per_prefix(client):
    out = io.StringIO()
    bar = MultiProgressBar(client.map(inc, range(3)) + [client.submit(boom, 1)], file=out)
    assert bar.status == "error"
    last = out.getvalue().splitlines()[-3:]
    assert [line.split()[0] for line in last] == ["boom", "inc", "total"]
    assert "1 erred" in last[0] and "1 erred" in last[2]
    with pytest.raises(NotImplementedError, match="prefix"):
        MultiProgressBar([], func=lambda k: k)


def test_progress_widget_is_one_red_bar_on_error(client, fake_ipywidgets, poll):
    bar = ProgressWidget(client.map(inc, range(3)) + [client.submit(boom, 2)])
    bar._start_in_background()
    poll(lambda: bar.finished)
    assert list(bar.bars) == ["total"]
    assert bar.bars["total"].bar_style == "danger" and "1 erred" in bar.labels["total"].value
