"""Reading checkpoints written by torchbearer 0.5, whose keys were pickled ``StateKey`` objects.

0.5 keyed ``Trial.state_dict()`` by ``StateKey`` objects and stored callback classes, so its files
need full unpickling (``weights_only=False``), which can run code: use this only on files you
trust. :func:`load_0_5_checkpoint` rebuilds every key as its plain string and every class as its
qualified name, giving a dict that ``Trial.load_state_dict`` accepts. Save it again with
``torch.save`` to get a file that loads safely from then on.
"""

from __future__ import annotations

import importlib
import pickle
import types
from typing import Any

import torch


class _LegacyStateKey:
    """Stands in for a pickled 0.5 ``StateKey`` (a plain object whose ``key`` attribute is its text)."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _LegacyUnpickler(pickle.Unpickler):
    """Maps 0.5's ``StateKey`` to a stand-in and classes that no longer exist to their names."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torchbearer.state" and name == "StateKey":
            return _LegacyStateKey
        try:
            return super().find_class(module, name)
        except (AttributeError, ImportError):
            if module.startswith("torchbearer"):
                return type(name, (), {"__module__": module, "__qualname__": name})
            raise


_legacy_pickle = types.ModuleType("torchbearer_legacy_pickle")
_legacy_pickle.__dict__.update({name: getattr(pickle, name) for name in dir(pickle) if not name.startswith("__")})
_legacy_pickle.Unpickler = _LegacyUnpickler


def _plain(value: Any) -> Any:
    """``value`` with legacy keys turned into strings and classes into qualified names, recursively."""
    if isinstance(value, _LegacyStateKey):
        return str(value.__dict__.get("key", value.__dict__.get("name")))
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def load_0_5_checkpoint(path: str, map_location: Any = None) -> dict:
    """Load a torchbearer 0.5 checkpoint (trusted files only) as a plain, string-keyed dict.

    Args:
        path: The checkpoint file.
        map_location: Passed to :func:`torch.load`.

    Returns:
        The state dict with string keys, ready for ``Trial.load_state_dict``.

    Example:
        >>> trial.load_state_dict(load_0_5_checkpoint('old_model.pt'))  # doctest: +SKIP
    """
    importlib.import_module("torchbearer.state")
    loaded = torch.load(path, map_location=map_location, weights_only=False, pickle_module=_legacy_pickle)
    return _plain(loaded)
