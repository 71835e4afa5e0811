"""Repeated identical failures are counted and logged once per interval (issue 18)."""

from __future__ import annotations

import logging

from shoal.log_limit import LogLimiter


def test_a_flood_is_one_line_per_interval_with_the_count(caplog):
    now = [0.0]
    lim = LogLimiter(logging.getLogger("shoal.test-limit"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="shoal.test-limit"):
        for i in range(10_000):
            now[0] = i * 0.01  # 100 failures a second for 100 s
            lim.warning("handshake", "Dropped connection from %s", f"peer-{i}")
        lim.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert 10 <= len(lines) <= 12
    assert lines[0] == "Dropped connection from peer-0"
    assert "999 more handshake failures in the last 10 s" in lines[1]
    assert lim.totals["handshake"] == 10_000
    # every failure is accounted for: a line stands for itself plus the ones it counts
    accounted = 0
    for line in lines:
        if "more handshake failures, the last" in line:  # flush: counts only
            accounted += int(line.split(" ", 1)[0])
        elif "(and " in line:
            accounted += 1 + int(line.split("(and ", 1)[1].split(" ", 1)[0])
        else:
            accounted += 1
    assert accounted == 10_000


def test_kinds_are_limited_separately(caplog):
    lim = LogLimiter(logging.getLogger("shoal.test-limit2"), interval=10.0, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="shoal.test-limit2"):
        assert lim.warning("handshake", "a")
        assert not lim.warning("handshake", "a")
        assert lim.warning("bad-message", "b")
    assert [r.getMessage() for r in caplog.records] == ["a", "b"]
