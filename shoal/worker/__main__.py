"""`python -m shoal.worker SCHEDULER_ADDRESS ...`: one worker process.

Started by a `Nanny` (and `LocalCluster(processes=True)` without nannies); users run
`shoal worker`. The shared secret arrives in the environment variable SHOAL_SECRET (hex),
never on the command line where other users could read it; the dask configuration of
the process that started it arrives in SHOAL_INHERIT_CONFIG (`shoal.config.inherited`). The process exits when its
scheduler connection closes, on SIGTERM/SIGINT, or when its parent process dies. With
`--announce-fd N` it writes its address and a newline to file descriptor N once it has
started, then closes it (how a nanny learns that its worker is up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal


async def _main(args: argparse.Namespace) -> None:
    from shoal.worker.server import Worker

    secret_hex = os.environ.pop("SHOAL_SECRET", "")
    options = {}
    if args.options:  # more Worker options from the nanny (pickled: they may be objects), read once
        import cloudpickle

        with open(args.options, "rb") as f:
            options = cloudpickle.load(f)
        os.unlink(args.options)
    worker = Worker(
        args.scheduler,
        nthreads=args.nthreads,
        name=json.loads(args.name) if args.name else None,
        memory_limit=args.memory_limit,
        resources=json.loads(args.resources) if args.resources else None,
        secret=bytes.fromhex(secret_hex) if secret_hex else None,
        host=args.host,
        local_directory=args.local_directory,
        nanny=args.nanny,
        death_timeout=args.death_timeout,
        port=args.port,
        **options,
    )
    await worker.start()
    if args.announce_fd is not None:
        os.write(args.announce_fd, (worker.address + "\n").encode())
        os.close(args.announce_fd)
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: closing.append(asyncio.ensure_future(worker.close())))
    parent = os.getppid()

    async def watch_parent() -> None:
        while worker.status == "running":
            if os.getppid() != parent:
                await worker.close()
                return
            await asyncio.sleep(0.5)  # polling the parent pid: no event to wait on

    watcher = asyncio.ensure_future(watch_parent())
    await worker.finished()
    watcher.cancel()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m shoal.worker")
    p.add_argument("scheduler")
    p.add_argument("--nthreads", type=int, default=1)
    p.add_argument("--name", default=None, help="JSON-encoded worker name")
    p.add_argument("--memory-limit", type=int, default=0)
    p.add_argument("--resources", default=None, help="JSON object")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="TCP port to listen on (0: any free one)")
    p.add_argument("--local-directory", default=None)
    p.add_argument("--nanny", default=None, help="id of the supervising nanny")
    p.add_argument("--death-timeout", type=float, default=None)
    p.add_argument("--announce-fd", type=int, default=None)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--options", default=None, help="a file of more Worker options (pickled, removed once read)")
    args = p.parse_args(argv)
    from shoal import config
    from shoal._loop import run_process

    config.apply_inherited(os.environ)  # what the user set before starting this worker
    from shoal.compat import install_from_environment

    install_from_environment()  # the user's process ran in compatibility mode: so do its tasks

    run_process(lambda: _main(args), args.log_level)


if __name__ == "__main__":
    main()
