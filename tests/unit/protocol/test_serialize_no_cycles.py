"""`dumps` of what plain pickle refuses (lambdas) must not leave a reference cycle that
keeps its callers' frames, and so their locals, alive until the next garbage collection."""

from __future__ import annotations

import gc
import weakref

from shoal.protocol.serialize import dumps, dumps_bytes


class Token:
    pass


def _caller(dump):
    local = Token()  # a local of the caller's frame, like the Future in Client.submit
    dump(lambda: 1)
    return weakref.ref(local)


def test_dumps_of_a_lambda_keeps_no_caller_frame_alive():
    gc.disable()
    try:
        for dump in (dumps, dumps_bytes):
            ref = _caller(dump)
            assert ref() is None, dump.__name__
    finally:
        gc.enable()
