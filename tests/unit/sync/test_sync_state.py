"""The pure state of the coordination primitives, driven by plain calls."""

from __future__ import annotations

import pytest

from shoal.sync.state import SyncState, VariableValue, normalize_name


def test_variable_set_get_replace_delete():
    st = SyncState()
    assert st.variable_get("x") is None
    assert st.variable_set("x", "data", 1) is None
    assert st.variable_get("x") == VariableValue("data", 1)
    old = st.variable_set("x", "future", "k1")
    assert old == VariableValue("data", 1)
    assert st.variable_set("x", "future", "k2") == VariableValue("future", "k1")
    assert st.variable_delete("x") == VariableValue("future", "k2")
    assert st.variable_delete("x") is None  # deleting an unset variable is harmless
    assert st.variables == {}


def test_variable_bad_kind():
    with pytest.raises(ValueError):
        SyncState().variable_set("x", "nope", 1)


def test_event_flag_and_no_leak():
    st = SyncState()
    assert not st.event_is_set("e")
    assert st.event_set("e") is True
    assert st.event_set("e") is False  # already set: nobody to wake
    assert st.event_is_set("e")
    assert st.event_clear("e") is True
    assert st.event_clear("e") is False
    assert st.events == set()


def test_semaphore_leases():
    st = SyncState()
    assert st.semaphore_try_acquire("s", 2, "l1", "c1")
    assert st.semaphore_try_acquire("s", 2, "l1", "c1")  # idempotent retry
    assert st.semaphore_value("s") == 1
    assert st.semaphore_try_acquire("s", 2, "l2", "c2")
    assert not st.semaphore_try_acquire("s", 2, "l3", "c1")
    assert st.semaphore_locked("s")
    st.semaphore_release("s", "l1")
    assert st.semaphore_value("s") == 1
    assert not st.semaphore_locked("s")
    assert st.semaphore_try_acquire("s", 2, "l3", "c1")


def test_semaphore_release_not_held():
    st = SyncState()
    with pytest.raises(ValueError, match="not held"):
        st.semaphore_release("s", "l1")
    st.semaphore_try_acquire("s", 1, "l1", "c1")
    st.semaphore_release("s", "l1")
    with pytest.raises(ValueError, match="not held"):
        st.semaphore_release("s", "l1")
    assert st.semaphore_try_acquire("s", 1, "l2", "c1")  # still usable


def test_semaphore_inconsistent_and_invalid_max_leases():
    st = SyncState()
    st.semaphore_register("s", 1)
    with pytest.raises(ValueError, match="Inconsistent max leases: 2, expected: 1"):
        st.semaphore_try_acquire("s", 2, "l", "c")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            st.semaphore_register("t", bad)


def test_remove_holder_frees_only_its_leases():
    st = SyncState()
    st.semaphore_try_acquire("a", 2, "l1", "c1")
    st.semaphore_try_acquire("a", 2, "l2", "c2")
    st.semaphore_try_acquire("b", 1, "l3", "c1")
    st.semaphore_try_acquire("c", 1, "l4", "c2")
    assert sorted(st.remove_holder("c1")) == ["a", "b"]
    assert st.semaphore_value("a") == 1
    assert st.semaphore_value("b") == 0
    assert st.semaphore_value("c") == 1
    assert st.remove_holder("c1") == []


def test_normalize_name():
    assert normalize_name(["x", [1, 2]]) == ("x", (1, 2))
    assert normalize_name("x") == "x"
    assert normalize_name(b"x") == b"x"
