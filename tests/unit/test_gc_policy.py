"""The garbage-collector policy of shoal's own processes (`shoal._gc`)."""

from __future__ import annotations

import gc
import weakref

import pytest

from shoal import _gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def policy():
    assert _gc._policy is None
    try:
        yield _gc
    finally:
        _gc.restore()


def test_survivors_of_a_full_collection_are_frozen(policy):
    policy.freeze_survivors(sweep_interval=3600)
    gc.collect()
    assert gc.get_freeze_count() > 1000  # modules, classes, functions: walked no more


def test_new_garbage_cycles_are_still_collected(policy):
    policy.freeze_survivors(sweep_interval=3600)
    gc.collect()
    node = Node()
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None


def test_a_cycle_frozen_while_alive_is_freed_by_the_next_sweep(policy):
    policy.freeze_survivors(sweep_interval=3600)
    node = Node()
    ref = weakref.ref(node)
    gc.collect()  # node is alive: frozen with the other survivors
    del node
    gc.collect()
    assert ref() is not None  # frozen: this collection did not walk it
    policy._policy.sweep_interval = 0  # the next full collection is a sweep
    gc.collect()
    assert ref() is None


def test_installing_twice_keeps_one_callback_and_restore_thaws(policy):
    policy.freeze_survivors()
    policy.freeze_survivors()
    assert sum(cb is policy._policy for cb in gc.callbacks) == 1
    gc.collect()
    policy.restore()
    assert gc.get_freeze_count() == 0 and policy._policy is None
    assert not any(isinstance(cb, _gc._FreezeSurvivors) for cb in gc.callbacks)


def test_paused_restores_the_collector_even_on_error():
    assert gc.isenabled()
    with pytest.raises(ValueError), _gc.paused():
        assert not gc.isenabled()
        raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc.paused():
            pass
        assert not gc.isenabled()  # off before: stays off
    finally:
        gc.enable()
