"""`connect(..., retry_refused=False)`: a refused connection fails at once instead of
being retried until the connect timeout (workers fetching from a dead worker)."""

from __future__ import annotations

import asyncio

import pytest

from shoal.comm import connect, listen


async def _closed_address(scheme: str) -> str:
    async def handler(comm):
        await comm.close()

    listener = await listen(f"{scheme}://127.0.0.1:0" if scheme == "tcp" else "inproc://", handler)
    address = listener.address
    await listener.stop()
    return address


@pytest.mark.parametrize("scheme", ["tcp", "inproc"])
def test_refused_fails_at_once_without_retries(scheme):
    async def main():
        address = await _closed_address(scheme)
        # the timeout is far beyond the test's: only an immediate failure passes
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(connect(address, timeout=3600, retry_refused=False), 60)

    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["tcp", "inproc"])
def test_refused_is_retried_until_the_timeout_by_default(scheme):
    async def main():
        address = await _closed_address(scheme)
        with pytest.raises(OSError, match="Timed out trying to connect"):
            await connect(address, timeout=0.2)

    asyncio.run(main())
