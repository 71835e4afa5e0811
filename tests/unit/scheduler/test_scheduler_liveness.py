"""The pure worker-TTL decision (`shoal.scheduler.liveness`)."""

from __future__ import annotations

import pytest

from shoal.scheduler.liveness import check_interval, expired, parse_ttl


def test_expired_lists_only_workers_silent_longer_than_the_ttl_oldest_first():
    seen = {"a": 10.0, "b": 3.0, "c": 1.0, "d": 5.0}
    assert expired(seen, now=10.0, ttl=5.0) == ["c", "b"]
    assert expired(seen, now=10.0, ttl=100.0) == []
    assert expired({}, now=10.0, ttl=1.0) == []


def test_a_worker_exactly_at_the_ttl_is_still_alive():
    assert expired({"a": 5.0}, now=10.0, ttl=5.0) == []
    assert expired({"a": 4.999}, now=10.0, ttl=5.0) == ["a"]


@pytest.mark.parametrize(("ttl", "interval"), [(300.0, 10.0), (5.0, 0.5), (0.1, 0.05)])
def test_check_interval_is_a_tenth_of_the_ttl_within_bounds(ttl, interval):
    assert check_interval(ttl) == pytest.approx(interval)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5 minutes", 300.0), ("300ms", 0.3), (2, 2.0), (None, None), ("none", None), (0, None), ("0s", None)],
)
def test_parse_ttl(value, seconds):
    assert parse_ttl(value) == seconds


def test_parse_ttl_rejects_negative_values():
    with pytest.raises(ValueError, match="worker-ttl must not be negative"):
        parse_ttl(-1)
