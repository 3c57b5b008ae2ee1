"""``CallbackList``: calls a list of callbacks in order, skipping hooks they do not override."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from torchbearer.bases import HOOKS, Callback
from torchbearer.errors import ConfigurationTypeError, TorchbearerWarning
from torchbearer.state import EPOCH, METRICS


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


def _is_loss(key: Any) -> bool:
    return key == "loss" or str(key).endswith("_loss")


class _NonFiniteLossWarning(Callback):
    """Warns, once per run, when a pass ends with a NaN or infinite loss metric (no TerminateOnNaN to stop it).

    It reads the end-of-pass metrics, which are already Python numbers: no device sync.
    """

    def __init__(self) -> None:
        self._warned = False

    def on_start(self, state: dict) -> None:
        self._warned = False

    def on_end_training(self, state: dict) -> None:
        self._check(state, "training")

    def on_end_validation(self, state: dict) -> None:
        self._check(state, "validation")

    def _check(self, state: dict, pass_name: str) -> None:
        metrics = state.get(METRICS)
        if self._warned or not isinstance(metrics, dict):
            return
        invalid = {
            str(key): value
            for key, value in metrics.items()
            if _is_loss(key) and isinstance(value, float) and not math.isfinite(value)
        }
        if invalid:
            self._warned = True
            warnings.warn(
                f"the loss is not finite at the end of the {pass_name} pass of epoch {state.get(EPOCH, 0)} "
                f"({invalid}); training goes on with a loss that cannot improve. Add "
                "torchbearer.callbacks.TerminateOnNaN() to the callbacks to stop at the first NaN, and look for a "
                "learning rate that is too high or NaN/inf values in the data",
                TorchbearerWarning,
                stacklevel=2,
            )


def _check_is_a_list(callback_list: Any) -> None:
    """Refuse a lone callback where a list of callbacks is expected (``callbacks=EarlyStopping()``)."""
    if isinstance(callback_list, Callback) and not isinstance(callback_list, CallbackList):
        name = type(callback_list).__name__
        raise ConfigurationTypeError(
            f"callbacks must be a list, got a single {name}: put it in a list, e.g. callbacks=[{name}(...)]"
        )
    if not isinstance(callback_list, Iterable):
        raise ConfigurationTypeError(
            f"callbacks must be a list of Callbacks, got a {type(callback_list).__name__}: pass e.g. "
            "callbacks=[EarlyStopping()]"
        )


def _not_a_callback(callback: Any) -> ConfigurationTypeError:
    if isinstance(callback, type) and issubclass(callback, Callback):
        return ConfigurationTypeError(
            f"callback {callback.__name__} is a class, not a callback: instantiate it, e.g. "
            f"callbacks=[{callback.__name__}()]"
        )
    return ConfigurationTypeError(
        f"callback {callback!r} of type {type(callback).__name__} is not a torchbearer Callback; "
        "subclass torchbearer.Callback or wrap a function with a decorator such as "
        "@torchbearer.callbacks.on_step_training"
    )


class CallbackList(Callback):
    """A callback that forwards every hook to a list of callbacks, in order.

    Nested ``CallbackList``s are flattened. For each hook the list keeps, once, the callbacks
    that override it, so hooks nobody uses cost nothing.

    Args:
        callback_list: An iterable of callbacks.
        warn_on_nan_loss: Warn once per run when a pass ends with a NaN or infinite ``loss`` (or
            ``*_loss``) metric, unless the list holds a ``TerminateOnNaN``. A Trial's own list does.

    Raises:
        ConfigurationTypeError: (a ``TypeError``) If ``callback_list`` is a single callback or an
            entry is not a callback.
    """

    CALLBACK_STATES = "callback_states"
    CALLBACK_TYPES = "callback_types"

    def __init__(self, callback_list: Iterable[Callback], *, warn_on_nan_loss: bool = False) -> None:
        self.callback_list: list[Callback] = []
        self._dispatch: dict[str, list] = {}
        self._loss_warning = _NonFiniteLossWarning() if warn_on_nan_loss else None
        self.append(callback_list)

    def append(self, callback_list: Iterable[Callback]) -> None:
        """Add callbacks (flattening nested lists) and refresh the per-hook dispatch lists."""
        _check_is_a_list(callback_list)
        for callback in callback_list:
            if isinstance(callback, CallbackList):
                self.callback_list.extend(callback.callback_list)
            elif isinstance(callback, Callback):
                self.callback_list.append(callback)
            else:
                raise _not_a_callback(callback)
        self.forget_dispatch()

    def forget_dispatch(self) -> None:
        """Drop the per-hook dispatch built so far (after the callbacks change)."""
        self._dispatch = {}
        for hook in HOOKS:
            self.__dict__.pop(hook, None)

    def _hooks(self, hook: str) -> list:
        bound = self._dispatch.get(hook)
        if bound is None:
            bound = [getattr(cb, hook) for cb in self.callback_list if overrides(cb, hook)]
            if self._loss_warning is not None and overrides(self._loss_warning, hook) and not self._stops_on_nan():
                bound.append(getattr(self._loss_warning, hook))
            self._dispatch[hook] = bound
        return bound

    def _stops_on_nan(self) -> bool:
        from torchbearer.callbacks.terminate_on_nan import TerminateOnNaN  # here: the package is still importing

        return any(isinstance(callback, TerminateOnNaN) for callback in self.callback_list)

    def state_dict(self) -> dict:
        return {
            self.CALLBACK_STATES: [callback.state_dict() for callback in self.callback_list],
            self.CALLBACK_TYPES: [_class_name(type(callback)) for callback in self.callback_list],
        }

    def load_state_dict(self, state_dict: dict) -> CallbackList:
        """Restore each callback from the next saved state of its class, in order; warn once about the rest.

        A callback whose class has no saved state left after the previous match keeps its own state; saved
        states in between are skipped, so one added or removed callback does not stop the others' restoring.
        """
        saved_types = [_class_name(entry) for entry in state_dict[self.CALLBACK_TYPES]]
        saved_states = list(state_dict[self.CALLBACK_STATES])
        loaded, not_restored, position = set(), [], 0
        for index, callback in enumerate(self.callback_list):
            name = _class_name(type(callback))
            match = next((saved for saved in range(position, len(saved_types)) if saved_types[saved] == name), None)
            if match is None:
                not_restored.append(index)
                continue
            callback.load_state_dict(saved_states[match])
            loaded.add(match)
            position = match + 1
        if not_restored:
            warnings.warn(self._mismatch_message(saved_types, loaded, not_restored), stacklevel=2)
        return self

    def _mismatch_message(self, saved_types: list, loaded: set, not_restored: list) -> str:
        saved = [name.rsplit(".", 1)[-1] for name in saved_types]
        own = [type(callback).__name__ for callback in self.callback_list]

        def listed(names: list, indices) -> str:
            return ", ".join(f"#{index + 1} {names[index]}" for index in indices) or "none"

        restored = [index for index in range(len(own)) if index not in not_restored]
        return (
            f"Callback classes did not match, expected: {saved}, got: {own}. Restored: {listed(own, restored)}. "
            f"Not restored (no saved state of its class, in order): {listed(own, not_restored)}. Saved but not "
            f"loaded: {listed(saved, [index for index in range(len(saved)) if index not in loaded])}. Give the "
            "callbacks in the order they were saved in to restore them all"
        )

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callback_list)

    def __len__(self) -> int:
        return len(self.callback_list)

    def __copy__(self) -> CallbackList:
        return CallbackList(self.callback_list, warn_on_nan_loss=self._loss_warning is not None)

    def copy(self) -> CallbackList:
        return self.__copy__()

    def __str__(self) -> str:
        return str([str(callback) for callback in self.callback_list])


def _no_listener(state: dict) -> None:
    return None


def _caller(bound: list):
    """One function calling every bound hook in order: nothing, the single hook itself, or a loop."""
    if not bound:
        return _no_listener
    if len(bound) == 1:
        return bound[0]

    def call_each(state: dict) -> None:
        for bound_hook in bound:
            bound_hook(state)

    return call_each


def _make_forwarder(hook: str):
    def forward(self: CallbackList, state: dict) -> None:
        caller = _caller(self._hooks(hook))
        self.__dict__[hook] = caller  # later calls go straight to it: a hook nobody uses costs one call
        caller(state)

    forward.__name__ = hook
    forward.__doc__ = f"Call ``{hook}`` on every callback that overrides it."
    return forward


for _hook in HOOKS:
    setattr(CallbackList, _hook, _make_forwarder(_hook))
