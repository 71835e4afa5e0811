"""A Dask user's futures script, written for `distributed`, run unchanged with only the
import switched to shoal: in a fresh interpreter, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.system

SCRIPT = textwrap.dedent(
    '''
    import asyncio
    import time

    from shoal import Client, LocalCluster, as_completed, fire_and_forget, futures_of, wait
    from shoal import TimeoutError, CancelledError


    def inc(x):
        return x + 1


    def add(a, b):
        return a + b


    def slow(x, delay=0.3):
        time.sleep(delay)
        return x


    def fail(x):
        raise ValueError(f"bad input {x}")


    def touch(path):
        with open(path, "w") as f:
            f.write("done")


    async def run_async(address, security):
        async with Client(address, security=security, asynchronous=True) as c:
            x = c.submit(inc, 41)
            assert await x == 42
            futures = c.map(inc, range(10))
            seen = [await f async for f in as_completed(futures)]
            assert sorted(await c.gather(seen)) == list(range(1, 11))
            [d] = await c.scatter([7])
            assert await c.submit(add, d, 1) == 8


    if __name__ == "__main__":
        import os, sys
        marker = sys.argv[1]
        with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
            # submit, map, gather, futures as arguments
            x = client.submit(inc, 1)
            y = client.submit(add, x, 10)
            assert y.result() == 12
            L = client.map(inc, range(100))
            total = client.submit(sum, L)
            assert total.result() == sum(range(1, 101))
            assert client.gather([x, [y, {"k": x}]]) == [2, [12, {"k": 2}]]

            # scatter
            data = client.scatter(list(range(5)))
            assert client.gather(client.map(inc, data)) == [1, 2, 3, 4, 5]

            # exceptions reach the caller with their type; others unaffected
            bad = client.submit(fail, 3)
            try:
                bad.result()
            except ValueError as e:
                assert "bad input 3" in str(e)
            else:
                raise AssertionError("no error")
            assert client.submit(inc, 5).result() == 6
            assert isinstance(bad.exception(), ValueError)

            # timeouts leave the future usable
            s = client.submit(slow, 9, pure=False)
            try:
                s.result(timeout=0.01)
            except TimeoutError:
                pass
            else:
                raise AssertionError("no timeout")
            assert s.result() == 9

            # wait, as_completed
            fs = [client.submit(slow, i, 0.05 * i, pure=False) for i in range(4)]
            done, not_done = wait(fs, return_when="FIRST_COMPLETED")
            assert len(done) >= 1
            assert sorted(f.result() for f in as_completed(fs)) == [0, 1, 2, 3]

            # cancel
            c1 = client.submit(slow, 1, 5, pure=False)
            c2 = client.submit(inc, c1)
            client.cancel(c1)
            try:
                c2.result(timeout=5)
            except CancelledError:
                pass
            else:
                raise AssertionError("not cancelled")

            # fire and forget
            fire_and_forget(client.submit(touch, marker))
            deadline = time.time() + 10
            while not os.path.exists(marker) and time.time() < deadline:
                time.sleep(0.02)
            assert os.path.exists(marker)

            assert futures_of([x, [y]]) == [x, y]
            asyncio.run(run_async(cluster.scheduler_address, cluster.security))
        print("ALL OK")
    '''
)


def test_distributed_style_script_runs_unchanged(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    marker = tmp_path / "marker"
    proc = subprocess.run(
        [sys.executable, str(script), str(marker)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL OK" in proc.stdout
