"""Actor classes and task functions for the actor tests, in a module of their own so
worker processes can import them (system tests) as well as in-process workers."""

from __future__ import annotations

import asyncio
import threading

from shoal import get_worker


class Counter:
    n = 0

    def __init__(self, start=0):
        self.n = start
        self.label = f"counter from {start}"

    def increment(self, by=1):
        self.n += by
        return self.n

    def add(self, a, b=0, *, c=0):
        self.n += a + b + c
        return self.n

    def fail(self, message):
        raise ZeroDivisionError(message)

    def thread_name(self):
        return threading.current_thread().name

    def worker_address(self):
        return get_worker().address

    def wait_for(self, event_name, timeout=5):
        from shoal import Event

        return Event(event_name).wait(timeout)

    def bump_other(self, other, times=1):
        """Call another actor from inside this actor's method."""
        return [other.increment().result() for _ in range(times)]

    async def ainc(self, by=1):
        await asyncio.sleep(0)
        self.n += by
        return self.n

    @property
    def doubled(self):
        return 2 * self.n


def increment_many(counter, times):
    """A task that drives an actor it got as an argument."""
    return [counter.increment().result() for _ in range(times)][-1]


def read_n(counter):
    return counter.n


def holds_actor(key, dask_worker):
    return key in dask_worker.state.actors


class Broken:
    def __init__(self):
        raise ValueError("cannot build this actor")
