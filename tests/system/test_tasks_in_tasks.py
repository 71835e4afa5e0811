"""Tasks that use the cluster, on real worker processes."""

from __future__ import annotations

import pytest

from task_functions import compute_inside, fan_out, fib, reschedule_once

pytestmark = pytest.mark.system


def test_fib_and_fan_out_on_worker_processes(client, tmp_path):
    assert client.submit(fib, 9, pure=False).result(timeout=60) == 34
    assert client.submit(fan_out, 100, pure=False).result(timeout=60) == 2 * sum(range(100))
    assert client.submit(reschedule_once, str(tmp_path / "m"), pure=False).result(timeout=30) == "second run"
    assert client.submit(compute_inside, pure=False).result(timeout=60) == 2 * sum(range(20))
