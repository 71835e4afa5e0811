"""`fuzzing.mutate`, the cheap mutator behind benchmarks/fuzz.py's long runs."""

from __future__ import annotations

import random

from shoal.protocol import messages as m
from shoal.protocol.framing import PacketEncoder
from shoal.protocol.fuzzing import UNSAFE_REQUESTS, mutate

REGISTER = m.RegisterClient("fuzz-1", {}).to_wire()
DONORS = [
    ("client", [REGISTER, ("release-keys", ("x", 1)), ("request", 5, "identity", {"n_workers": 1})]),
    (None, [("task-finished", "x", 3, 10, "int", 0.0, 1.0, None), ("request", 7, "terminate", {})]),
    ("worker", [m.RegisterWorker("tcp://127.0.0.1:9", "w", 1, 2**30, {}, 1, "/tmp", {}, None).to_wire(), {"odd": [1, 2.5]}]),
]


def test_mutations_change_packets_keep_the_registration_first_and_stay_safe():
    rng = random.Random(0)
    enc = PacketEncoder()
    changed = 0
    for _ in range(2000):
        packet = rng.choice(DONORS)
        role, wires = mutate(rng, packet, DONORS)
        assert role == packet[0]
        if role is not None:
            assert wires[0] == packet[1][0]  # the registration stays first, unchanged
        assert 1 <= len(wires) <= 9
        assert not [w for w in wires if type(w) is tuple and len(w) > 2 and w[0] == "request" and type(w[2]) is str and w[2] in UNSAFE_REQUESTS]
        for w in wires:
            enc.add(w)  # still something the wire can carry
        enc.take()
        changed += wires != packet[1]
    assert changed > 1500  # nearly every mutation changes something
    # donors are never changed in place
    assert DONORS[0][1][1] == ("release-keys", ("x", 1))


def test_the_same_seed_gives_the_same_cases():
    a = [mutate(random.Random(7), p, DONORS) for p in DONORS]
    b = [mutate(random.Random(7), p, DONORS) for p in DONORS]
    assert a == b
