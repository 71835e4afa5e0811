"""The `shoal` command line: `shoal scheduler` and `shoal worker SCHEDULER_ADDRESS`.

Flags follow `dask scheduler` / `dask worker` (see `shoal <command> --help`). This module
owns argument parsing and the pieces both commands share: where the shared secret comes
from, loopback checks and the refusal to listen on a reachable address without one.
The commands themselves live in `shoal.cli.scheduler` and `shoal.cli.worker`.

The secret is never a command-line argument (other users can read argv): it comes from
`--secret-file PATH` (a file holding the secret in hex), else the `SHOAL_SECRET`
environment variable (hex), else a scheduler file written by `shoal scheduler
--scheduler-file` (which generates one when given none).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from shoal.comm.addressing import is_loopback_host, parse_address, parse_host_port
from shoal.secret_files import parse_secret

__all__ = ["main"]

TLS_FLAGS = ("--tls-ca-file", "--tls-cert", "--tls-key")


class CLIError(Exception):
    """A command-line problem reported as one line on stderr with exit status 1."""


def read_secret(secret_file: str | None) -> bytes | None:
    """The shared secret from `--secret-file` or `SHOAL_SECRET` (hex), or None."""
    if secret_file:
        try:
            with open(os.path.expanduser(secret_file)) as f:
                text = f.read().strip()
        except OSError as e:
            raise CLIError(f"cannot read --secret-file: {e}") from None
        try:
            secret = parse_secret(text)
        except ValueError:
            raise CLIError(f"--secret-file {secret_file}: expected the secret in hexadecimal") from None
        if not secret:
            raise CLIError(f"--secret-file {secret_file} is empty")
        return secret
    value = os.environ.pop("SHOAL_SECRET", "")  # not passed on to processes we start
    if value:
        try:
            return parse_secret(value)
        except ValueError:
            raise CLIError("SHOAL_SECRET must be the secret in hexadecimal") from None
    return None


def host_of(address: str) -> str:
    scheme, loc = parse_address(address)
    if scheme == "inproc":
        return "127.0.0.1"
    return parse_host_port(loc, 0)[0]


def local_ip_towards(host: str) -> str:
    """The address of the interface this machine uses to reach `host` (no packet sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def refuse_insecure(what: str, host: str, secret: bytes | None, insecure: bool) -> None:
    if secret is None and not insecure and not is_loopback_host(host):
        raise CLIError(
            f"refusing to listen on {host!r} without a shared secret: anyone who can reach {what} could run "
            "code on it. Give a secret (SHOAL_SECRET=<hex> in the environment, --secret-file PATH, or "
            "--scheduler-file PATH for `shoal scheduler`, which then generates one), listen on loopback only "
            "(--host 127.0.0.1), or pass --insecure to accept unauthenticated connections."
        )


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--secret-file", metavar="PATH", help="file holding the shared secret in hex (else $SHOAL_SECRET)")
    p.add_argument(
        "--insecure", action="store_true", help="allow listening on a non-loopback address without a shared secret"
    )
    p.add_argument(
        "--dashboard-address", default=":8787",
        help="scheduler: where the dashboard listens (':PORT' binds the scheduler's host; default :8787); "
        "worker: accepted and ignored (workers serve no dashboard)",
    )
    p.add_argument("--dashboard", dest="dashboard", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false", help="scheduler: serve no dashboard")
    p.add_argument("--pid-file", metavar="PATH", help="write the process id to this file")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    for flag in TLS_FLAGS:
        p.add_argument(flag, metavar="PATH", help="not supported yet (shoal authenticates with a shared secret)")


def check_tls(args: argparse.Namespace) -> None:
    given = [f for f in TLS_FLAGS if getattr(args, f[2:].replace("-", "_"))]
    if given:
        raise CLIError(
            f"{', '.join(given)}: TLS is not supported yet; connections are authenticated with a shared secret "
            "(SHOAL_SECRET / --secret-file) instead"
        )


def build_parser() -> argparse.ArgumentParser:
    from shoal import __version__
    from shoal.cli import scheduler, worker

    p = argparse.ArgumentParser(prog="shoal", description="Run shoal schedulers and workers.")
    p.add_argument("--version", action="version", version=f"shoal {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    scheduler.add_parser(sub)
    worker.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `shoal` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from shoal.compat import install_from_environment

    install_from_environment()  # started from a program in compatibility mode (SubprocessCluster, ...)
    try:
        check_tls(args)
        return int(args.run(args) or 0)
    except CLIError as e:
        print(f"shoal {args.command}: error: {e}", file=sys.stderr)
        return 1
