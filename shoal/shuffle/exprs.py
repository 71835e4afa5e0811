"""Rebuilding a dask expression with some of its nodes replaced, names kept.

dask keeps one node per name (`SingletonExpr`), so a node built with ``cls(...)`` for a
name that exists is the old node: `fresh` builds a new one with `Expr.__new__`. A parent
of a replaced node is rebuilt as a fresh node of its own type and token, keeping the
cached properties that do not depend on the change (name, meta, divisions); the
original expression is not touched. Used by the dataframe shuffle rewrite
(`shoal.shuffle.dataframe`) and the rechunk rewrite (`shoal.shuffle.rechunk`).
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["fresh", "rebuild"]

_KEPT = ("_name", "_funcname", "_meta", "_divisions", "npartitions")


def fresh(cls: type, operands: list, token: str) -> Any:
    """A new `cls` node of these operands and this token."""
    from dask._expr import Expr

    return Expr.__new__(cls, *operands, _determ_token=token)


def rebuild(expr: Any, swap: Callable[[Any, list], Any]) -> Any:
    """`expr` rebuilt bottom-up. ``swap(node, operands)`` (operands already rebuilt)
    returns the node's replacement, or a list of new operands for a fresh node of the
    node's own type, or None to keep it (rebuilt only if an operand changed)."""
    return _rebuild(expr, swap, {})


def _operand(op: Any, swap: Any, memo: dict) -> Any:
    from dask._expr import Expr

    if isinstance(op, Expr):
        return _rebuild(op, swap, memo)
    if type(op) in (list, tuple):
        new = [_operand(o, swap, memo) for o in op]
        if any(a is not b for a, b in zip(new, op)):
            return type(op)(new)
    return op


def _rebuild(expr: Any, swap: Any, memo: dict) -> Any:
    name = expr._name
    done = memo.get(name)
    if done is not None:
        return done
    operands = [_operand(op, swap, memo) for op in expr.operands]
    changed = any(a is not b for a, b in zip(operands, expr.operands))
    out = swap(expr, operands)
    if isinstance(out, list):
        out = fresh(type(expr), out, expr.deterministic_token)
        out.__dict__["_name"] = name
    elif out is None:
        if changed:
            out = fresh(type(expr), operands, expr.deterministic_token)
            for k, v in expr.__dict__.items():
                if k in _KEPT and k not in out.__dict__:
                    out.__dict__[k] = v
        else:
            out = expr
    memo[name] = out
    return out
