"""``CallbackList``: calls a list of callbacks in order, skipping hooks they do not override."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from torchbearer.bases import HOOKS, Callback


def overrides(callback: Callback, hook: str) -> bool:
    """True when ``callback`` does something at ``hook``: its class overrides it or it was bound."""
    if hook in vars(callback):
        return True
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


def _class_name(entry: Any) -> str:
    """A saved callback type as a qualified name (0.5 checkpoints stored the class itself)."""
    if isinstance(entry, type):
        return f"{entry.__module__}.{entry.__qualname__}"
    return str(entry)


class CallbackList(Callback):
    """A callback that forwards every hook to a list of callbacks, in order.

    Nested ``CallbackList``s are flattened. For each hook the list keeps, once, the callbacks
    that override it, so hooks nobody uses cost nothing.

    Args:
        callback_list: An iterable of callbacks.
    """

    CALLBACK_STATES = "callback_states"
    CALLBACK_TYPES = "callback_types"

    def __init__(self, callback_list: Iterable[Callback]) -> None:
        self.callback_list: list[Callback] = []
        self._dispatch: dict[str, list] = {}
        self.append(callback_list)

    def append(self, callback_list: Iterable[Callback]) -> None:
        """Add callbacks (flattening nested lists) and refresh the per-hook dispatch lists."""
        for callback in callback_list:
            if isinstance(callback, CallbackList):
                self.callback_list.extend(callback.callback_list)
            elif isinstance(callback, Callback):
                self.callback_list.append(callback)
            else:
                raise TypeError(
                    f"callback {callback!r} of type {type(callback).__name__} is not a torchbearer Callback; "
                    "subclass torchbearer.Callback or wrap a function with a decorator such as "
                    "@torchbearer.callbacks.on_step_training"
                )
        self._dispatch = {}

    def _hooks(self, hook: str) -> list:
        bound = self._dispatch.get(hook)
        if bound is None:
            bound = [getattr(cb, hook) for cb in self.callback_list if overrides(cb, hook)]
            self._dispatch[hook] = bound
        return bound

    def state_dict(self) -> dict:
        return {
            self.CALLBACK_STATES: [callback.state_dict() for callback in self.callback_list],
            self.CALLBACK_TYPES: [_class_name(type(callback)) for callback in self.callback_list],
        }

    def load_state_dict(self, state_dict: dict) -> CallbackList:
        saved_types = [_class_name(entry) for entry in state_dict[self.CALLBACK_TYPES]]
        saved_states = list(state_dict[self.CALLBACK_STATES])
        position = 0
        for callback in self.callback_list:
            if position < len(saved_types) and saved_types[position] == _class_name(type(callback)):
                callback.load_state_dict(saved_states[position])
                position += 1
            else:
                warnings.warn(f"Callback classes did not match, expected: {saved_types}", stacklevel=2)
        return self

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callback_list)

    def __len__(self) -> int:
        return len(self.callback_list)

    def __copy__(self) -> CallbackList:
        return CallbackList(self.callback_list)

    def copy(self) -> CallbackList:
        return self.__copy__()

    def __str__(self) -> str:
        return str([str(callback) for callback in self.callback_list])


def _make_forwarder(hook: str):
    def forward(self: CallbackList, state: dict) -> None:
        for bound_hook in self._hooks(hook):
            bound_hook(state)

    forward.__name__ = hook
    forward.__doc__ = f"Call ``{hook}`` on every callback that overrides it."
    return forward


for _hook in HOOKS:
    setattr(CallbackList, _hook, _make_forwarder(_hook))
