"""Task functions for the traceback tests (importable by worker processes)."""


def inner(x):
    raise ValueError(f"bad input {x}")


def outer(x):
    return inner(x)


def long_message(n):
    raise ValueError("x" * n)


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(code, detail)


def two_arg_error(n):
    raise TwoArgError(7, "y" * n)
