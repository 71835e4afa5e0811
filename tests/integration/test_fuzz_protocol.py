"""Property-based fuzzing of the wire protocol (issue 18), bounded for the suite.

* Decoding: `from_wire` on any value and the framing on any bytes fail only with the
  protocol's own errors.
* The scheduler's I/O shell: packets of plausible and mutated messages (every op, with
  fields that are sometimes right, sometimes the wrong type, NaN, huge, unknown keys,
  stale run ids), sent as an unregistered peer, a client or a worker. After every
  packet the scheduler answers, its state passes `validate_state` and the cluster
  still computes.
* The worker's I/O shell: the same against a worker's listener (the calls and messages
  other peers send it), checking the worker's state after every packet.

`benchmarks/fuzz.py` runs the same generators for long runs against real processes.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from task_functions import inc

from shoal import Client, LocalCluster
from shoal.comm import connect
from shoal.protocol import framing
from shoal.protocol import messages as m
from shoal.protocol.fuzzing import packets, values, wires

SETTINGS = settings(
    max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip


# ------------------------------------------------------------------ pure decoding


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(st.one_of(wires(), values()))
def test_from_wire_fails_only_with_protocol_errors(wire):
    try:
        msg = m.from_wire(wire)
    except m.ProtocolError:
        return
    assert type(msg) in m.OPS.values()
    # what passes the checks round-trips
    assert m.from_wire(msg.to_wire()) == msg


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(wires(["compute-task", "task-finished", "task-started", "key-in-memory", "release-keys", "free-keys"]))
def test_the_fast_checks_of_hot_messages_agree_with_the_field_checks(wire):
    cls = m.OPS.get(wire[0]) if type(wire) is tuple and wire and type(wire[0]) is str else None
    fast = m._FAST.get(cls)
    if fast is None or len(wire) - 1 != len(cls._checks):
        return
    generic = all(check(v) for check, v in zip(cls._checks, wire[1:]))
    assert fast(*wire[1:]) == generic, wire


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=256), st.integers(0, 2**20))
def test_framing_fails_only_with_framing_errors(data, cap):
    try:
        frames = framing.split_packet(data, cap)
        framing.decode_packet(frames[1:] if frames else [])
    except (framing.PreludeError, framing.DecodeError):
        pass


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(wires(), min_size=1, max_size=4), st.data())
def test_mutated_packets_fail_only_with_framing_errors(msgs, data):
    try:
        encoded = b"".join(bytes(f) for f in framing.encode_packet(msgs))
    except (TypeError, ValueError, OverflowError):
        return
    i = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[i] ^= data.draw(st.integers(1, 255))
    for blob in (bytes(flipped), encoded[:i]):
        try:
            frames = framing.split_packet(blob, 1 << 20)
            batch = framing.decode_packet(frames[1:])
        except (framing.PreludeError, framing.DecodeError):
            continue
        for wire in batch if isinstance(batch, (list, tuple)) else [batch]:
            try:
                m.from_wire(wire)
            except m.ProtocolError:
                pass


# ------------------------------------------------------------------ the I/O shells


@pytest.fixture(scope="module")
def fcluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://") as cl:
        yield cl


@pytest.fixture(scope="module")
def fclient(fcluster):
    with Client(fcluster.scheduler_address, security=fcluster.security) as c:
        held = c.map(inc, range(20), key=[("fuzz-held", i) for i in range(20)])
        c.gather(held)
        yield c


async def _probe(address, secret, packet, call=("identity", {})):
    """Send `packet`, then `call`; True if the peer answered it (the packet was taken),
    False if it closed the connection (the packet was refused)."""
    comm = await connect(address, secret=secret, info={"role": "probe"})
    try:
        comm.send_many(packet)
        comm.send(m.Request(99, call[0], call[1]).to_wire())
        while True:
            try:
                batch = await asyncio.wait_for(comm.read(), 10)
            except asyncio.TimeoutError:
                raise AssertionError(f"no answer and no close within 10 s after {packet!r}") from None
            except Exception:
                return False
            if any(type(w) is tuple and w[:2] == ("reply", 99) for w in batch):
                return True
    finally:
        comm.abort()


@SETTINGS
@given(packets())
def test_the_scheduler_shell_survives_any_packet(fclient, fcluster, case):
    _, packet = case
    fclient.sync(lambda: _probe(fcluster.scheduler_address, fcluster.security.secret, packet))
    fclient.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())
    assert fcluster.scheduler.status == "running", fcluster.scheduler.status_reason


def test_after_the_scheduler_fuzz_the_cluster_computes(fclient, fcluster, poll):
    # the fake workers and clients of the fuzz are gone with their connections
    poll(lambda: set(fcluster.scheduler.workers) == {w.address for w in fcluster.workers.values()}, timeout=10)
    poll(lambda: set(fcluster.scheduler.clients) <= {fclient.id}, timeout=10)
    assert fclient.submit(inc, 1, pure=False).result(timeout=10) == 2
    fclient.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())


@SETTINGS
@given(packets(worker_side=True))
def test_the_worker_shell_survives_any_packet(fclient, fcluster, case):
    _, packet = case
    [worker] = fcluster.workers.values()
    fclient.sync(lambda: _probe(worker.address, fcluster.security.secret, packet, ("echo", {"data": 1})))
    fclient.run(lambda dask_worker: dask_worker.state.validate_state())
    assert worker.status == "running"


def test_after_the_worker_fuzz_the_cluster_computes(fclient):
    assert fclient.submit(inc, 2, pure=False).result(timeout=10) == 3
    assert not any(math.isnan(k) for k in fclient.run(lambda dask_worker: list(dask_worker.data)).popitem()[1]
                   if isinstance(k, float))  # fmt: skip
