"""Pure state of queues and multi-locks, driven by plain calls."""

from __future__ import annotations

import pytest

from shoal.sync.state import SyncState, VariableValue

# ---------------------------------------------------------------------- queues


def test_queue_fifo_and_size():
    st = SyncState()
    assert st.queue_size("q") == 0
    for i in range(3):
        assert st.queue_put("q", 0, "data", i)
    assert st.queue_size("q") == 3
    items, released = st.queue_get("q", 0, 1)
    assert items == [VariableValue("data", 0)] and released == []
    items, _ = st.queue_get("q", 0, None)  # batch=True: everything
    assert [i.value for i in items] == [1, 2]
    assert st.queue_get("q", 0, None) == ([], [])  # empty batch never waits
    assert st.queue_get("q", 0, 1) is None  # nothing to take


def test_queue_maxsize_first_registration_wins():
    st = SyncState()
    assert st.queue_put("q", 2, "data", 1)
    assert st.queue_put("q", 0, "data", 2)  # maxsize 2 stays
    assert not st.queue_put("q", 0, "data", 3)
    assert st.queue_size("q") == 2
    st.queue_get("q", 0, 1)
    assert st.queue_put("q", 2, "data", 3)


def test_queue_bad_arguments():
    st = SyncState()
    with pytest.raises(ValueError):
        st.queue_register("q", -1)
    with pytest.raises(ValueError):
        st.queue_put("q", 0, "nope", 1)


def test_queue_batch_n_all_or_nothing():
    st = SyncState()
    st.queue_put("q", 0, "data", "a")
    assert st.queue_get("q", 0, 2) is None
    assert st.queue_size("q") == 1  # nothing was taken
    st.queue_put("q", 0, "data", "b")
    items, _ = st.queue_get("q", 0, 2)
    assert [i.value for i in items] == ["a", "b"]


def test_queue_future_keys_released_with_last_occurrence():
    st = SyncState()
    st.queue_put("q", 0, "future", "k")
    st.queue_put("q", 0, "data", 1)
    st.queue_put("q", 0, "future", "k")
    items, released = st.queue_get("q", 0, 1)
    assert items == [VariableValue("future", "k")]
    assert released == []  # still queued once more
    items, released = st.queue_get("q", 0, 2)
    assert released == ["k"]
    assert st.queues["q"].keys == {}


# ---------------------------------------------------------------------- multi-locks


def test_multilock_all_or_nothing():
    st = SyncState()
    assert st.multilock_acquire("r1", ["a"], "c1") == ["r1"]
    assert st.multilock_acquire("r2", ["a", "b"], "c2") == []
    assert st.multilock_granted("r2") is False
    assert "b" not in st.multilock_owners  # no partial hold
    assert st.multilock_locked(["b"]) is False
    assert st.multilock_locked(["a", "z"]) is True
    assert st.multilock_release("r1") == ["r2"]
    assert st.multilock_owners == {"a": "r2", "b": "r2"}


def test_multilock_idempotent_and_dedup():
    st = SyncState()
    assert st.multilock_acquire("r1", ["a", "a", ("t", 1)], "c1") == ["r1"]
    assert st.multilock_acquire("r1", ["a"], "c1") == []
    assert st.multilock_granted("r1") is True
    assert st.multilock_requests["r1"].names == ("a", ("t", 1))
    assert st.multilock_locked([["t", 1]])  # lists normalised to tuples


def test_multilock_fifo_per_lock():
    st = SyncState()
    st.multilock_acquire("r1", ["a"], "c1")
    st.multilock_acquire("r2", ["a", "b"], "c2")  # waits for a
    # r3 only needs b, which is free, but the older r2 wants it: r3 queues behind r2
    assert st.multilock_acquire("r3", ["b"], "c3") == []
    # an unrelated request is not held up
    assert st.multilock_acquire("r4", ["c"], "c4") == ["r4"]
    assert st.multilock_release("r1") == ["r2"]
    assert st.multilock_release("r2") == ["r3"]


def test_multilock_opposite_orders_no_deadlock():
    st = SyncState()
    assert st.multilock_acquire("x", ["a", "b"], "c1") == ["x"]
    assert st.multilock_acquire("y", ["b", "a"], "c2") == []
    assert st.multilock_acquire("z", ["a", "b"], "c3") == []
    assert st.multilock_release("x") == ["y"]
    assert st.multilock_release("y") == ["z"]
    assert st.multilock_release("z") == []
    assert st.multilock_owners == {} and st.multilock_requests == {}


def test_multilock_many_overlapping_requests_all_served():
    st = SyncState()
    names = ["a", "b", "c", "d"]
    reqs = {f"r{i}": [names[i % 4], names[(i + 1) % 4], names[(i + 3) % 4]] for i in range(12)}
    held = []
    for rid, ns in reqs.items():
        held += st.multilock_acquire(rid, ns, "c")
    done = []
    while held:
        rid = held.pop(0)
        owners = [n for n, r in st.multilock_owners.items() if r == rid]
        assert sorted(owners) == sorted(reqs[rid])  # holds all its locks
        done.append(rid)
        held += st.multilock_release(rid)
    assert sorted(done) == sorted(reqs)
    assert done == list(reqs)  # all overlap pairwise: strictly FIFO


def test_multilock_withdraw_wakes_followers():
    st = SyncState()
    st.multilock_acquire("r1", ["a"], "c1")
    st.multilock_acquire("r2", ["a", "b"], "c2")
    st.multilock_acquire("r3", ["b"], "c3")
    assert st.multilock_withdraw("r2") == ["r3"]  # r2 timed out: r3 may take b
    assert st.multilock_granted("r2") is None
    assert st.multilock_withdraw("r1") == []  # granted requests are released, not withdrawn


def test_multilock_release_not_held():
    st = SyncState()
    with pytest.raises(ValueError, match="not yet acquired"):
        st.multilock_release("r1")
    st.multilock_acquire("r1", ["a"], "c1")
    st.multilock_acquire("r2", ["a"], "c2")
    with pytest.raises(ValueError, match="not yet acquired"):
        st.multilock_release("r2")  # pending, not granted


def test_multilock_remove_holder():
    st = SyncState()
    st.multilock_acquire("r1", ["a", "b"], "gone")
    st.multilock_acquire("r2", ["b"], "gone")
    st.multilock_acquire("r3", ["a"], "c3")
    removed, granted = st.multilock_remove_holder("gone")
    assert sorted(removed) == ["r1", "r2"]
    assert granted == ["r3"]
    assert st.multilock_owners == {"a": "r3"}
    assert st.multilock_remove_holder("nobody") == ([], [])
