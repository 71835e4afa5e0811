"""Unit tests for shoal.protocol.serialize: pickle-5 dumps/loads with cloudpickle fallback."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from shoal.protocol.serialize import OOB_THRESHOLD, Pickled, dumps, dumps_bytes, loads, loads_bytes


@pytest.mark.parametrize(
    "obj",
    [
        None,
        1,
        -(2**70),
        1.5,
        "héllo ✓",
        b"\x00bytes",
        bytearray(b"abc"),
        (1, (2, 3)),
        [1, [2, {"a": (1, 2)}]],
        {("x", 1): {1, 2, 3}},
        frozenset({"a"}),
        range(10),
        ValueError("boom"),
    ],
)
def test_builtins_round_trip(obj):
    p = dumps(obj)
    assert isinstance(p, Pickled)
    assert p.buffers == ()
    out = loads(p)
    if isinstance(obj, Exception):
        assert type(out) is type(obj) and out.args == obj.args
    else:
        assert out == obj and type(out) is type(obj)


def test_large_numpy_array_is_out_of_band_and_zero_copy():
    arr = np.arange(1_000_000 // 8, dtype=np.float64)  # 1 MB
    p = dumps(arr)
    assert len(p.buffers) == 1
    assert memoryview(p.buffers[0]).nbytes == arr.nbytes
    assert len(p.header) < 1024  # the data is not in the pickle stream
    assert p.nbytes == len(p.header) + arr.nbytes
    out = loads(p)
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, arr)  # out-of-band buffers are not copied


def test_small_numpy_array_stays_in_band():
    arr = np.arange(10, dtype=np.int64)
    assert arr.nbytes < OOB_THRESHOLD
    p = dumps(arr)
    assert p.buffers == ()
    np.testing.assert_array_equal(loads(p), arr)


def test_fortran_and_structured_arrays():
    f = np.asfortranarray(np.arange(100_000, dtype=np.float32).reshape(400, 250))
    s = np.zeros(5000, dtype=[("a", "i4"), ("b", "f8")])
    for arr in (f, s):
        p = dumps(arr)
        assert len(p.buffers) == 1
        out = loads(p)
        np.testing.assert_array_equal(out, arr)
        assert out.flags.f_contiguous == arr.flags.f_contiguous


def test_lambda_and_local_function_use_cloudpickle():
    y = 10

    def local(x):
        return x + y

    for f, expected in ((lambda x: x * 2, 6), (local, 13)):
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            pickle.dumps(f, protocol=5)
        assert loads(dumps(f))(3) == expected
        assert loads_bytes(dumps_bytes(f))(3) == expected


def test_objects_from_main_are_pickled_by_value():
    import __main__

    name = "_shoal_test_main_function"
    exec(f"def {name}(x):\n    return x + 100\n", __main__.__dict__)
    try:
        f = getattr(__main__, name)
        assert pickle.dumps(f, protocol=5)  # plain pickle would store a reference...
        p = dumps(f)
        b = dumps_bytes(f)
    finally:
        delattr(__main__, name)
    # ...which a worker could not resolve; ours carries the code itself.
    assert loads(p)(1) == 101
    assert loads_bytes(b)(2) == 102


def test_function_claiming_main_module_falls_back():
    def g(x):
        return -x

    g.__module__ = "__main__"
    g.__qualname__ = "g_that_does_not_exist_in_main"
    assert loads(dumps(g))(4) == -4


def test_unpicklable_object_names_its_type():
    with pytest.raises(TypeError, match="lock"):
        dumps(threading.Lock())
    with pytest.raises(TypeError) as info:
        dumps({"key": [threading.Lock()]})
    assert "dict" in str(info.value) and "lock" in str(info.value)
    with pytest.raises(TypeError, match="lock"):
        dumps_bytes(threading.Lock())


def test_dumps_bytes_is_in_band():
    arr = np.arange(100_000)
    data = dumps_bytes(arr)
    assert isinstance(data, bytes) and len(data) > arr.nbytes
    np.testing.assert_array_equal(loads_bytes(data), arr)


def test_pickled_repr_and_nbytes():
    p = Pickled(b"abc", [b"12345", memoryview(bytearray(10))])
    assert p.nbytes == 3 + 5 + 10
    assert "18" in repr(p) and "2 buffer" in repr(p)
    assert Pickled(b"x").buffers == ()


def test_shared_function_travels_by_reference():
    from dask._task_spec import Task, TaskRef

    def local_fn(x, y=1):  # a local function: only cloudpickle can carry it by value
        return x + y

    node = Task("k", local_fn, TaskRef("a"), y=2)
    with_ref = dumps(node, ref=local_fn)
    whole = dumps(node)
    assert with_ref.nbytes < whole.nbytes / 2  # the function itself is not inside
    back = loads(with_ref, ref=local_fn)
    assert back({"a": 40}) == 42
    assert back.dependencies == node.dependencies


def test_loads_waits_for_a_module_another_thread_is_importing(monkeypatch):
    """Two threads importing a self-referencing package at once: CPython gives one of
    them a half-initialized module. `loads` then imports the module itself (waiting for
    the other thread) and tries again, instead of failing the task."""
    import importlib
    import pickle

    # the module (`from shoal.protocol import serialize` is distributed's function)
    serialize = importlib.import_module("shoal.protocol.serialize")

    calls = []

    class Flaky(serialize._Unpickler):
        def load(self):
            calls.append("loads")
            if len(calls) == 1:
                raise ImportError(
                    "cannot import name 'X' from partially initialized module 'json.decoder' "
                    "(most likely due to a circular import)",
                    name="json.decoder",
                )
            return super().load()

    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(serialize, "_Unpickler", Flaky)
    monkeypatch.setattr(serialize.importlib, "import_module", lambda name: imported.append(name) or real_import(name))
    assert serialize.loads(dumps({"a": 1})) == {"a": 1}
    assert imported == ["json.decoder"] and calls == ["loads", "loads"]

    # any other ImportError is the user's: raised at once
    class Broken(serialize._Unpickler):
        def load(self):
            raise ImportError("no module x", name="x")

    monkeypatch.setattr(serialize, "_Unpickler", Broken)
    with pytest.raises(ImportError, match="no module x"):
        serialize.loads(dumps(1))


def test_imports_made_by_unpickling_take_turns(tmp_path, monkeypatch):
    """While one thread's unpickling imports a module, another thread's unpickling waits
    before it imports anything (a worker's event loop and its task thread in a fresh
    process both import numpy: CPython can show the second a submodule not yet bound to
    its package, python/cpython#149728, and numpy then recursed or loaded its C module
    twice). A module already imported does not wait."""
    import builtins
    import sys
    import threading

    (tmp_path / "shoal_slow_import.py").write_text(
        "import builtins\n"
        "def first():\n    return 'first'\n"
        "builtins._shoal_entered.set()\n"
        "builtins._shoal_gate.wait(30)\n"
    )
    (tmp_path / "shoal_other_import.py").write_text("def second():\n    return 'second'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entered, gate = threading.Event(), threading.Event()
    monkeypatch.setattr(builtins, "_shoal_entered", entered, raising=False)
    monkeypatch.setattr(builtins, "_shoal_gate", gate, raising=False)
    gate.set()
    import shoal_other_import
    import shoal_slow_import

    first, second = dumps(shoal_slow_import.first), dumps(shoal_other_import.second)
    for name in ("shoal_slow_import", "shoal_other_import"):
        del sys.modules[name]
    entered.clear()
    gate.clear()
    got: dict = {}

    def load(name, p):
        got[name] = loads(p)()

    a = threading.Thread(target=load, args=("first", first))
    a.start()
    try:
        assert entered.wait(30)  # `a` is inside its module's import
        assert loads(dumps(len))("ab") == 2  # what is imported already loads at once
        b = threading.Thread(target=load, args=("second", second))
        b.start()
        b.join(0.3)
        assert b.is_alive() and "shoal_other_import" not in sys.modules  # waiting its turn
    finally:
        gate.set()
    a.join(30)
    b.join(30)
    assert got == {"first": "first", "second": "second"}
    for name in ("shoal_slow_import", "shoal_other_import"):
        sys.modules.pop(name, None)


def test_small_pickles_drop_their_frame_opcode_and_still_load():
    import pickletools

    small = dumps(("x", 1, [1.5, "y"]))
    ops = [op.name for op, _, _ in pickletools.genops(small.header)]
    assert "FRAME" not in ops
    assert loads(small) == ("x", 1, [1.5, "y"])
    many = [str(i) for i in range(20_000)]
    big = dumps(many)  # big streams keep framing
    assert "FRAME" in [op.name for op, _, _ in pickletools.genops(big.header)]
    assert loads(big) == many
