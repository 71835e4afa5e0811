"""`python -m shoal.compat script.py [args]` or `python -m shoal.compat -m module [args]`:
run a program written for distributed, unchanged, on shoal (see `shoal.compat`)."""

from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage: python -m shoal.compat SCRIPT.py [ARGS...]  |  python -m shoal.compat -m MODULE [ARGS...]"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    from shoal import compat

    compat.install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
