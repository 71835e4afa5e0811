"""`FutureState`: what the client knows about one key, driven by scheduler messages."""

from __future__ import annotations

import asyncio

from shoal.client.futures import FutureState


def test_changed_wakes_on_any_transition_even_one_that_is_not_done():
    async def main() -> list:
        st = FutureState("x")
        st.finish("int", ("tcp://a:1",), None)
        seen = []

        async def watch() -> None:
            await st.changed()
            seen.append(st.status)
            await st.changed()
            seen.append(st.status)

        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0)  # the watcher waits
        st.lost()  # not a done state: `wait()` would not see it
        await asyncio.sleep(0)
        st.finish("int", ("tcp://b:1",), None)
        await asyncio.wait_for(watcher, 1)
        return seen

    assert asyncio.run(main()) == ["lost", "finished"]


def test_a_watcher_that_gives_up_is_forgotten():
    async def main() -> FutureState:
        st = FutureState("x")
        try:
            await asyncio.wait_for(st.changed(), 0.01)
        except asyncio.TimeoutError:
            pass
        return st

    st = asyncio.run(main())
    assert not st._watchers
    st.lost()  # nothing left to wake
