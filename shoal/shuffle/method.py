"""`SERVICE`: the value of dask's ``dataframe.shuffle.method`` on a shoal client.

Kept apart (it imports nothing) so that a client sets it without importing pandas; see
`shoal.shuffle.dataframe` for how dask's lowering and the rewrite use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SERVICE", "ServiceMethod"]


class ServiceMethod(str):
    """The value of ``dataframe.shuffle.method`` on a shoal client: ``"simple"`` to
    dask's lowering (so the shuffle becomes one rewritable `SimpleShuffle` node), equal
    to ``"tasks"`` as well so dask's other choices are those it makes for its task
    shuffle."""

    __slots__ = ()

    def __new__(cls) -> ServiceMethod:
        return super().__new__(cls, "simple")

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other) is True or other == "tasks"

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__

    def __reduce__(self) -> Any:
        return (ServiceMethod, ())


SERVICE = ServiceMethod()
