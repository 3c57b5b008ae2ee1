"""What one call of ``run``, ``evaluate`` or ``predict`` adds to a Trial, and stand-ins for missing parts.

A call injects the progress printer (which fires before the user's callbacks), sometimes an extra
callback (``predict``'s prediction collector) and the batch loader of its data set, and removes
them afterwards, so none of them ends up in a checkpoint. ``MockModel``, ``MockOptimizer`` and
``ZeroLoss`` stand in for a model, optimizer or criterion the user did not give.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from torchbearer import distributed
from torchbearer.bases import Callback
from torchbearer.callbacks.callbacks import CallbackList, overrides
from torchbearer.state import CALLBACK_LIST, DATA_TYPE, DEVICE, LOSS


class MockModel(torch.nn.Module):
    """Stands in for a missing model: returns ``None``."""

    def forward(self, x: Any, state: Any = None) -> None:
        return None


class MockOptimizer(torch.optim.Optimizer):
    """Stands in for a missing optimizer: ``step(closure)`` just runs the closure."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def add_param_group(self, param_group: dict) -> None:
        pass

    def load_state_dict(self, state_dict: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def step(self, closure=None):
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass


class ZeroLoss:
    """Stands in for a missing criterion: a zero loss that callbacks add to (``state[LOSS] += ...``).

    It also notes, without waiting for the device, whether a callback changed a loss it gave (added
    to it in place or replaced it), so that the Trial can warn when the loss stayed zero.
    """

    def __init__(self) -> None:
        self.changed = False
        self._given: torch.Tensor | None = None
        self._given_version = 0

    def __call__(self, state: dict) -> torch.Tensor:
        # At the next batch, the state's loss is the previous one after its on_criterion callbacks.
        self.changed = self.changed or self.was_changed(state.get(LOSS))
        # A clone, not a leaf, so callbacks may add to it in place (state[LOSS] += ...).
        loss = torch.zeros(1, device=state[DEVICE], dtype=state[DATA_TYPE], requires_grad=True).clone()
        self._given, self._given_version = loss, loss._version  # _version counts in-place changes
        return loss

    @property
    def gave_a_loss(self) -> bool:
        """Whether the criterion has been called."""
        return self._given is not None

    def was_changed(self, loss: Any) -> bool:
        """Whether ``loss``, the state's loss after the criterion's callbacks, is not the zero given last, unchanged."""
        if loss is None or self._given is None:  # a fresh call state: nothing to compare
            return False
        return loss is not self._given or loss._version != self._given_version

    def __repr__(self) -> str:
        return "None (a zero loss that callbacks may add to)"


class CallbackListInjection(CallbackList):
    """The callback list used during one call: ``callback`` (the printer) fires before the user's list.

    Saving, loading, appending, copying and iterating act on the user's list only, so the
    printer is never part of a checkpoint.
    """

    def __init__(self, callback: Callback, callback_list: CallbackList) -> None:
        self.callback = callback
        self.callback_list = callback_list
        self._dispatch = {}

    def _hooks(self, hook: str) -> list:
        bound = self._dispatch.get(hook)
        if bound is None:
            bound = [getattr(self.callback, hook)] if overrides(self.callback, hook) else []
            bound += self.callback_list._hooks(hook)
            self._dispatch[hook] = bound
        return bound

    def state_dict(self) -> dict:
        return self.callback_list.state_dict()

    def load_state_dict(self, state_dict: dict) -> CallbackListInjection:
        self.callback_list.load_state_dict(state_dict)
        return self

    def append(self, callback_list) -> None:
        self.callback_list.append(callback_list)
        self.forget_dispatch()

    def copy(self) -> CallbackList:
        return self.callback_list.copy()

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callback_list)

    def __len__(self) -> int:
        return len(self.callback_list)

    def __str__(self) -> str:
        return str(self.callback_list)


def get_printer(verbose: int, validation_label_letter: str) -> Callback:
    """The progress printer for a verbosity: 2 a bar per pass, 1 a bar over epochs, else none."""
    from torchbearer.callbacks.printer import Tqdm

    if verbose >= 2:
        return Tqdm(validation_label_letter=validation_label_letter)
    if verbose >= 1:
        return Tqdm(validation_label_letter=validation_label_letter, on_epoch=True)
    return Callback()


def _argument_reader(func, name: str):
    """A function ``(args, kwargs) -> value`` of ``func``'s argument ``name`` in a call ``func(self, *args, **kwargs)``.

    The signature is read once, here, rather than bound on every call.
    """
    parameters = list(inspect.signature(func).parameters.values())
    position = [parameter.name for parameter in parameters].index(name) - 1  # args come after self
    default = parameters[position + 1].default

    def read(args: tuple, kwargs: dict) -> Any:
        if name in kwargs:
            return kwargs[name]
        return args[position] if position < len(args) else default

    return read


def inject_printer(validation_label_letter: str = "v"):
    """Decorator for Trial methods with a ``verbose`` argument: the printer fires first for the call.

    It decorates every method that runs passes, so it also scales the Trial out first (under torchrun).
    """

    def decorator(func):
        verbose_of = _argument_reader(func, "verbose")

        @functools.wraps(func)
        def wrapper(self: Any, *args, **kwargs):
            distributed.prepare(self)
            verbose = verbose_of(args, kwargs)
            printer = get_printer(self.verbose if verbose == -1 else verbose, validation_label_letter)
            if type(printer) is Callback:  # a silent call: the user's callbacks as they are
                return func(self, *args, **kwargs)
            user_list = self.state[CALLBACK_LIST]
            self.state[CALLBACK_LIST] = CallbackListInjection(printer, user_list)
            try:
                return func(self, *args, **kwargs)
            finally:
                self.state[CALLBACK_LIST] = user_list

        return wrapper

    return decorator


def inject_callback(callback: Callback):
    """Decorator for Trial methods: ``callback`` runs for the call, after the printer, before user callbacks."""

    def decorator(func):
        @functools.wraps(func)
        def wrapper(self: Any, *args, **kwargs):
            call_list = self.state[CALLBACK_LIST]
            user_list = call_list.callback_list if isinstance(call_list, CallbackListInjection) else call_list
            with_callback = CallbackList([callback])
            with_callback.callback_list.extend(user_list)
            injected = CallbackListInjection(getattr(call_list, "callback", Callback()), with_callback)
            self.state[CALLBACK_LIST] = injected
            try:
                return func(self, *args, **kwargs)
            finally:
                self.state[CALLBACK_LIST] = call_list

        return wrapper

    return decorator


def inject_sampler(data_key, batch_sampler):
    """Decorator for Trial methods with a ``data_key`` argument: set up that pass before the call."""

    def decorator(func):
        data_key_of = _argument_reader(func, "data_key")

        @functools.wraps(func)
        def wrapper(self: Any, *args, **kwargs):
            chosen = data_key_of(args, kwargs) or data_key
            self._prepare_pass(self.state, chosen, batch_sampler)  # the call's state copies it from here
            return func(self, *args, **kwargs)

        return wrapper

    return decorator
