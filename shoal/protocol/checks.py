"""Field checks for wire messages: what a valid value of each field type looks like.

This module owns the predicates that `messages` (stream messages) and `requests`
(request/reply calls) run on every decoded message before any state machine sees it.
Each check is a plain function ``value -> bool``: cheap, pure, never raising, so the
hot messages pay a few type tests per field and nothing more. Builders (`opt`,
`seq_of`, `dict_of`, `one_of`) combine them.

A task key is what dask allows: a `str`, `bytes`, `int` (bools too) or a `float` that is not NaN,
or a tuple of those (nested, at most `MAX_KEY_DEPTH` deep). NaN is refused because
``nan != nan``: a NaN key can be stored in a dict but never found again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from shoal.protocol.serialize import Pickled

__all__ = [
    "Check", "MAX_KEY_DEPTH", "MAX_STR", "anything", "boolean", "dict_of", "is_key", "keys", "nonneg_int",
    "number", "one_of", "opt", "pickled", "pos_int", "seq_of", "string", "integer", "plain_dict",
    "msgpack_data", "key_map",
]  # fmt: skip

Check = Callable[[Any], bool]

MAX_KEY_DEPTH = 8
#: longest string field (names, addresses, reasons) accepted from a peer
MAX_STR = 1 << 20
_SEQ = (tuple, list)


def anything(v: Any) -> bool:
    return True


def string(v: Any) -> bool:
    return type(v) is str and len(v) <= MAX_STR


def boolean(v: Any) -> bool:
    return type(v) is bool


def integer(v: Any) -> bool:
    return type(v) is int


def nonneg_int(v: Any) -> bool:
    return type(v) is int and v >= 0


def pos_int(v: Any) -> bool:
    return type(v) is int and v > 0


def number(v: Any) -> bool:
    """A finite int or float (times, durations, sizes)."""
    t = type(v)
    return t is int or (t is float and math.isfinite(v))


def pickled(v: Any) -> bool:
    return type(v) is Pickled


def plain_dict(v: Any) -> bool:
    return type(v) is dict


def is_key(k: Any, _depth: int = 0) -> bool:
    t = type(k)
    if t is str or t is int or t is bytes or t is bool:  # dask takes bools too (an int subclass)
        return True
    if t is float:
        return k == k  # not NaN
    if t is tuple and _depth < MAX_KEY_DEPTH:
        for part in k:
            if not is_key(part, _depth + 1):
                return False
        return True
    return False


def keys(v: Any) -> bool:
    """A tuple (or, from an in-process peer, list) of keys."""
    if type(v) not in _SEQ:
        return False
    for k in v:
        t = type(k)
        if t is not str and not is_key(k):
            return False
    return True


def key_map(value_check: Check) -> Check:
    """A dict from keys to values that pass `value_check`."""

    def check(v: Any) -> bool:
        if type(v) is not dict:
            return False
        for k, x in v.items():
            if (type(k) is not str and not is_key(k)) or not value_check(x):
                return False
        return True

    return check


def opt(check: Check) -> Check:
    """`check`, or None."""

    def optional(v: Any) -> bool:
        return v is None or check(v)

    return optional


def one_of(*checks: Check) -> Check:
    def either(v: Any) -> bool:
        return any(c(v) for c in checks)

    return either


def seq_of(check: Check) -> Check:
    def seq(v: Any) -> bool:
        return type(v) in _SEQ and all(check(x) for x in v)

    return seq


def dict_of(key_check: Check, value_check: Check) -> Check:
    def mapping(v: Any) -> bool:
        return type(v) is dict and all(key_check(k) and value_check(x) for k, x in v.items())

    return mapping


_SCALARS = (str, int, float, bool, bytes, type(None))


def msgpack_data(v: Any, _depth: int = 0) -> bool:
    """Plain data as msgpack carries it (no `Pickled`), nested at most 32 deep."""
    t = type(v)
    if t in _SCALARS:
        return True
    if _depth >= 32:
        return False
    if t is tuple or t is list:
        return all(msgpack_data(x, _depth + 1) for x in v)
    if t is dict:
        return all(msgpack_data(k, _depth + 1) and msgpack_data(x, _depth + 1) for k, x in v.items())
    return False
