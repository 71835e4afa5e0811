"""What one connection costs before it has proved the secret (issue 18: RSS under a flood).

A flood of connections that never authenticate holds many of them at once while the
server catches up; what each allocates up front is what the flood costs.  The figures
are allocations counted by tracemalloc (deterministic), not RSS or time.
"""

from __future__ import annotations

import asyncio
import tracemalloc

from shoal.comm.tcp import TCP
from shoal.protocol.framing import PacketEncoder


def _allocated_per_object(make, n: int = 200) -> float:
    make()  # first-use allocations (imports, caches) are not per object
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = [make() for _ in range(n)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(keep) == n
    return (after - before) / n


def test_a_connection_in_its_handshake_costs_a_few_kilobytes():
    loop = asyncio.new_event_loop()
    try:
        per_connection = _allocated_per_object(lambda: TCP(loop, 2**30))
    finally:
        loop.close()
    # ~9 KB: a 4 KiB read buffer, four deques, a future; it was 25 KB while every
    # connection's encoder reserved a 16 KiB msgpack buffer before sending anything
    assert per_connection < 12 * 1024, per_connection


def test_an_encoder_reserves_no_large_buffer_until_it_packs_one():
    assert _allocated_per_object(PacketEncoder) < 2 * 1024
    enc = PacketEncoder()
    enc.add({"op": "x", "data": b"y" * 100_000})
    assert b"".join(bytes(p) for p in enc.take()).count(b"y" * 100_000) == 1
