"""What clients share through the scheduler: published datasets (`publish_dataset`,
`get_dataset`, `Client.datasets`; the client side of `shoal.datasets`) and metadata
stored under keys (`set_metadata`, `get_metadata`).
"""

from __future__ import annotations

from typing import Any

from dask.typing import no_default


class SharingMethods:
    """The client's published datasets and metadata (a mixin of `Client`)."""

    def publish_dataset(self, *args: Any, name: Any = None, override: bool = False, **kwargs: Any) -> Any:
        """Publish named objects on the scheduler for other clients: ``(obj, name="x")``
        (several positional objects: a tuple), ``({"x": obj})`` or ``(x=obj)``. Futures
        inside stay alive until unpublished; an existing name raises `KeyError` unless
        `override`. Collections are stored as given (persist them first)."""
        from shoal import datasets

        return self.sync(datasets.publish, self, args, name, override, kwargs)

    def unpublish_dataset(self, name: Any, **kwargs: Any) -> Any:
        """Remove a published dataset (or a list of them); unknown names are ignored."""
        from shoal import datasets

        return self.sync(datasets.unpublish, self, name)

    def list_datasets(self, **kwargs: Any) -> Any:
        """The names of the published datasets, sorted by `str`."""
        from shoal import datasets

        return self.sync(datasets.list_names, self)

    def get_dataset(self, name: Any, default: Any = no_default, **kwargs: Any) -> Any:
        """The published object `name` (a list of names: a list of objects), its futures
        bound to this client; `default` if missing, else `KeyError`."""
        from shoal import datasets

        return self.sync(datasets.get, self, name, default)

    @property
    def datasets(self) -> Any:
        """The published datasets as a `MutableMapping` (see `shoal.datasets.Datasets`)."""
        from shoal.datasets import Datasets

        mapping = self.__dict__.get("_datasets")
        if mapping is None:
            mapping = self.__dict__["_datasets"] = Datasets(self)
        return mapping

    def set_metadata(self, key: Any, value: Any) -> Any:
        """Store small (msgpack) `value` on the scheduler under `key`; a list of keys is a
        nested path: ``set_metadata(["x", "y"], 1)`` makes ``get_metadata("x") == {"y": 1}``."""
        keys = list(key) if isinstance(key, list) else [key]
        return self._request("set_metadata", keys=keys, value=value)

    def get_metadata(self, keys: Any, default: Any = no_default) -> Any:
        """The metadata stored at `keys` (a key or a nested path); `default` when missing,
        else `KeyError`."""
        path = list(keys) if isinstance(keys, list) else [keys]
        if default is no_default:
            return self._request("get_metadata", keys=path)
        return self._request("get_metadata", keys=path, has_default=True, default=default)

