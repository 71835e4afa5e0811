"""`shoal scheduler`: a scheduler in this process until SIGTERM/SIGINT or `Client.shutdown()`.

Listens on 127.0.0.1:8786 by default; `--host 0.0.0.0` (or an interface address) accepts
remote workers and clients, which requires a shared secret unless `--insecure`. With
`--scheduler-file PATH` it writes its address (and its secret, generating a random one
when none was given) to PATH, mode 0600, and removes the file when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
from typing import Any

from shoal.cli import CLIError, add_common, is_loopback_host, local_ip_towards, read_secret, refuse_insecure
from shoal.comm.addressing import unparse_host_port

logger = logging.getLogger("shoal.scheduler")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "scheduler",
        help="start a scheduler",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8786, help="port to listen on (default 8786; 0 for any free port)")
    p.add_argument("--protocol", default="tcp", choices=["tcp"], help="transport (only tcp)")
    p.add_argument("--scheduler-file", metavar="PATH", help="write the address (and secret, mode 0600) here")
    p.add_argument("--preload", action="append", default=None, metavar="MODULE|FILE.py",
                   help="run this module's dask_setup(scheduler) once the scheduler is up (repeatable)")  # fmt: skip
    p.add_argument("--idle-timeout", default=None, help="close after this long without work ('1 hour')")
    add_common(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    secret = read_secret(args.secret_file)
    if secret is None and args.scheduler_file:
        secret = secrets.token_bytes(32)  # workers and clients read it from the scheduler file
    host = args.host
    refuse_insecure("this scheduler", host, secret, args.insecure)
    address = f"{args.protocol}://{unparse_host_port(host, args.port)}"
    from shoal._loop import run_process

    outcome: list[BaseException] = []

    async def main() -> None:
        try:
            await _serve(args, address, secret)
        except BaseException as e:
            outcome.append(e)

    run_process(main, args.log_level.upper())
    if outcome:
        e = outcome[0]
        cause = e.__cause__ if isinstance(e, RuntimeError) and e.__cause__ is not None else e  # failed to start
        if isinstance(cause, OSError):
            raise CLIError(f"cannot listen on {address}: {cause}")
        raise e
    return 0


async def _serve(args: argparse.Namespace, address: str, secret: bytes | None) -> None:
    from shoal.scheduler.server import Scheduler
    from shoal.scheduler_file import remove_scheduler_file, write_scheduler_file

    dashboard = args.dashboard_address if args.dashboard else None
    scheduler = Scheduler(address, secret=secret, insecure=args.insecure, dashboard_address=dashboard,
                          preload=args.preload, idle_timeout=args.idle_timeout)  # fmt: skip
    await scheduler.start()
    contact = scheduler.address
    if not is_loopback_host(args.host) and args.host in ("0.0.0.0", "::"):
        contact = contact.replace(f"//{args.host}:", f"//{local_ip_towards('10.255.255.255')}:")
    # files first: whoever waits for the banner may read them at once
    if args.scheduler_file:
        info = dict(scheduler.identity(), address=contact)
        write_scheduler_file(args.scheduler_file, info, secret)
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(str(os.getpid()))
    logger.info("-" * 47)
    logger.info("  Scheduler at: %25s", contact)
    logger.info("  Authentication: %s", "shared secret" if secret else "none")
    if scheduler.dashboard_link:
        logger.info("  Dashboard at: %25s", scheduler.dashboard_link)
    logger.info("-" * 47)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    finished = asyncio.ensure_future(scheduler.finished())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)
        logger.info("Scheduler closing")
        await scheduler.close()
    finally:
        finished.cancel()
        stopping.cancel()
        if args.scheduler_file:
            remove_scheduler_file(args.scheduler_file, scheduler.id)
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    logger.info("End scheduler")
