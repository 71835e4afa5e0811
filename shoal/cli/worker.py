"""`shoal worker SCHEDULER_ADDRESS`: workers for a scheduler, until SIGTERM/SIGINT or the
scheduler goes away.

By default each of the `--nworkers` workers is a process supervised by a nanny in this
process, which restarts it when it dies or its memory use passes the terminate fraction of
`--memory-limit`; `--no-nanny` runs one worker in this process instead. Workers listen
on 127.0.0.1 when the scheduler is on this machine's loopback, else on the address of the
interface that reaches the scheduler (`--host` to choose); a non-loopback address
requires a shared secret unless `--insecure`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from typing import Any

from shoal.utils import format_bytes
from shoal.cli import CLIError, add_common, host_of, is_loopback_host, local_ip_towards, read_secret, refuse_insecure

logger = logging.getLogger("shoal.worker")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="start workers for a scheduler",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scheduler", nargs="?", help="scheduler address, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--scheduler-file", metavar="PATH", help="read the scheduler's address (and secret) from here")
    p.add_argument("--nthreads", type=int, default=None, help="threads per worker (default: cores / nworkers)")
    p.add_argument(
        "--nworkers", default="1", help="worker processes: N, 'auto', or negative for cores + 1 + N (default 1)"
    )
    p.add_argument(
        "--memory-limit",
        default="auto",
        help="bytes per worker: 'auto' (memory / nworkers), an int, a fraction, '4GiB', or 0 for no limit",
    )
    p.add_argument("--name", default=None, help="worker name (NAME-0, NAME-1, ... with several workers)")
    p.add_argument("--resources", default=None, help='resources of each worker: "GPU=2 MEM=10e9" (or a JSON object)')
    p.add_argument("--nanny", dest="nanny", action="store_true", default=True, help="supervise workers (default)")
    p.add_argument("--no-nanny", dest="nanny", action="store_false", help="run one worker in this process")
    p.add_argument("--host", default=None, help="address workers listen on (default: see above)")
    p.add_argument("--local-directory", default=None, help="directory for the workers' scratch space")
    p.add_argument(
        "--death-timeout", type=float, default=None, help="seconds to keep trying to reach the scheduler at start"
    )
    p.add_argument("--interface", default=None, help="listen on this network interface's address (eth0, ib0, ...)")
    p.add_argument("--preload", action="append", default=None, metavar="MODULE|FILE.py",
                   help="run this module's dask_setup(worker) in each worker (repeatable)")  # fmt: skip
    p.add_argument("--lifetime", default=None, help="each worker retires itself after this long ('1 hour')")
    p.add_argument("--lifetime-stagger", default=None, help="a random amount of +- this is added to the lifetime")
    p.add_argument("--lifetime-restart", action="store_true", default=None,
                   help="after its lifetime, the nanny starts a fresh worker")  # fmt: skip
    add_common(p)
    p.set_defaults(run=run)


def parse_resources(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise CLIError(f"--resources: invalid JSON: {e}") from None
        return {str(k): float(v) for k, v in value.items()}
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, sep, amount = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(amount)
        except ValueError:
            raise CLIError(f"--resources: expected KEY=NUMBER items like 'GPU=2 MEM=10e9', got {item!r}") from None
    return out


def parse_nworkers(text: str, cores: int) -> tuple[int, int | None]:
    """(number of workers, threads per worker suggested by 'auto' or None)."""
    if text == "auto":
        from shoal.deploy.local import nprocesses_nthreads

        return nprocesses_nthreads(cores)
    try:
        n = int(text)
    except ValueError:
        raise CLIError(f"--nworkers must be an integer or 'auto', got {text!r}") from None
    if n < 0:
        n = cores + 1 + n
    if n < 1:
        raise CLIError(f"--nworkers {text} leaves no workers on {cores} cores")
    return n, None


def run(args: argparse.Namespace) -> int:
    from shoal.deploy.local import parse_memory_limit
    from shoal.scheduler_file import read_scheduler_file, secret_from

    secret = read_secret(args.secret_file)
    address = args.scheduler
    if args.scheduler_file:
        if address:
            raise CLIError("give either a scheduler address or --scheduler-file, not both")
        info = read_scheduler_file(args.scheduler_file, args.death_timeout)
        address = info["address"]
        if secret is None:
            secret = secret_from(info)
    if not address:
        raise CLIError("need the scheduler's address (or --scheduler-file PATH)")
    if secret is None:  # a scheduler this user started on this machine
        from shoal.secret_files import lookup

        secret = lookup(address)
    cores = os.cpu_count() or 1
    nworkers, auto_threads = parse_nworkers(args.nworkers, cores)
    if not args.nanny and nworkers > 1:
        raise CLIError("--no-nanny runs one worker in this process: it cannot be used with --nworkers > 1")
    nthreads = args.nthreads or auto_threads or max(1, cores // nworkers)
    limit: Any = args.memory_limit
    try:  # a bare number: a fraction of the memory if at most 1, else bytes
        limit = float(limit) if "." in limit or "e" in limit.lower() else int(limit)
        if isinstance(limit, float) and limit > 1:
            limit = int(limit)
    except ValueError:
        pass
    try:
        memory_limit = parse_memory_limit(limit, nworkers)
    except ValueError as e:
        raise CLIError(f"--memory-limit: {e}") from None
    resources = parse_resources(args.resources)
    scheduler_host = host_of(address)
    host = args.host
    if host is None and args.interface:
        from shoal.server_options import host_of_interface

        try:
            host = host_of_interface(args.interface)
        except ValueError as e:
            raise CLIError(f"--interface: {e}") from None
    if host is None:
        host = "127.0.0.1" if is_loopback_host(scheduler_host) else local_ip_towards(scheduler_host)
    refuse_insecure("these workers", host, secret, args.insecure)
    names: list[Any] = [None] * nworkers
    if args.name is not None:
        names = [args.name] if nworkers == 1 else [f"{args.name}-{i}" for i in range(nworkers)]
    options = dict(
        nthreads=nthreads, memory_limit=memory_limit, resources=resources, secret=secret, host=host,
        local_directory=args.local_directory, death_timeout=args.death_timeout,
    )  # fmt: skip
    extra = dict(preload=args.preload, lifetime=args.lifetime, lifetime_stagger=args.lifetime_stagger,
                 lifetime_restart=args.lifetime_restart)  # fmt: skip
    options.update({k: v for k, v in extra.items() if v is not None})
    from shoal._loop import run_process

    outcome: list[BaseException] = []

    async def main() -> None:
        try:
            await _serve(args, address, names, options)
        except BaseException as e:
            outcome.append(e)

    run_process(main, args.log_level.upper())
    if outcome:
        e = outcome[0]
        if isinstance(e, (OSError, RuntimeError, TimeoutError)):
            raise CLIError(str(e))
        raise e
    return 0


async def _serve(args: argparse.Namespace, address: str, names: list[Any], options: dict) -> None:
    from shoal.worker.nanny import Nanny
    from shoal.worker.server import Worker

    servers: list[Any] = []
    if args.nanny:
        servers = [Nanny(address, name=name, **options) for name in names]
    else:
        if options.get("local_directory"):
            os.makedirs(options["local_directory"], exist_ok=True)
            options["local_directory"] = None  # the worker makes and removes its own directory
        servers = [Worker(address, name=names[0], **options)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("Waiting to connect to: %s", address)
    try:
        await asyncio.gather(*(s.start() for s in servers))
        if args.pid_file:  # before the banner: whoever waits for it may read the file at once
            with open(args.pid_file, "w") as f:
                f.write(str(os.getpid()))
        for s in servers:
            logger.info("-" * 47)
            logger.info("  Start worker at: %25s", s.address)
            logger.info("  Threads: %d", options["nthreads"])
            limit = options["memory_limit"]
            logger.info("  Memory: %s", format_bytes(limit) if limit else "no limit")
            logger.info("  Nanny: %s", s.id if args.nanny else "none")
        stopping = asyncio.ensure_future(stop.wait())
        running = {asyncio.ensure_future(s.finished()) for s in servers}
        try:  # until a signal, or every worker (nanny) has closed, e.g. the scheduler went away
            while running and not stopping.done():
                _, running = await asyncio.wait(running | {stopping}, return_when=asyncio.FIRST_COMPLETED)
                running.discard(stopping)
        finally:
            for t in (*running, stopping):
                t.cancel()
    finally:
        await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    logger.info("End worker")
