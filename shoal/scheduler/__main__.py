"""`python -m shoal.scheduler [ADDRESS]`: a scheduler in its own process.

Prints its address on stdout once it listens. The shared secret comes from the
environment variable SHOAL_SECRET (hex), never the command line; without it the
scheduler only listens on loopback addresses (or with --insecure). Users run `shoal
scheduler` (`shoal.cli`), which has the flags of `dask scheduler`; this minimal entry
point stays for scripts and tests that read the address from stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal


async def _main(args: argparse.Namespace) -> None:
    from shoal.scheduler.server import Scheduler

    secret_hex = os.environ.pop("SHOAL_SECRET", "")
    scheduler = Scheduler(args.address, secret=bytes.fromhex(secret_hex) if secret_hex else None, insecure=args.insecure)
    await scheduler.start()
    print(scheduler.address, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await scheduler.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m shoal.scheduler")
    p.add_argument("address", nargs="?", default="tcp://127.0.0.1:0")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback address without a secret")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    from shoal._loop import run_process

    run_process(lambda: _main(args), args.log_level)


if __name__ == "__main__":
    main()
