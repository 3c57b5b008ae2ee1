"""Turn plain functions into callbacks, and guard callbacks with conditions.

A decorated function becomes a :class:`LambdaCallback` whose chosen hooks call the function.
Decorators stack, so one function can serve several hooks, and the guards (:func:`once`,
:func:`once_per_epoch`, :func:`only_if`) apply in either order around the hook decorators.

Example:
    >>> @on_forward
    ... @on_forward_validation
    ... def log_shapes(state):
    ...     print(state[torchbearer.Y_PRED].shape)
    >>> @once_per_epoch
    ... @on_step_training
    ... def first_batch(state):
    ...     print('epoch', state[torchbearer.EPOCH], 'started')

One decorator exists per hook in :data:`torchbearer.bases.HOOKS` (``on_init`` ... ``on_end``).
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable
from typing import Any, Union

import torchbearer.state as _keys
from torchbearer.bases import HOOKS, Callback

__all__ = [
    "LambdaCallback",
    "bind_to",
    *HOOKS,
    "add_to_loss",
    "once",
    "once_per_epoch",
    "only_if",
    "count_args",
]

StateFunction = Callable[[dict], Any]


class LambdaCallback(Callback):
    """A callback that runs one function of the state from the hooks bound to it.

    Usually made by the hook decorators (:func:`on_step_training`, ...) rather than directly.

    Args:
        func: A function ``func(state)``; its return value is passed through.
    """

    def __init__(self, func: StateFunction) -> None:
        self.func = func

    def on_lambda(self, state: dict) -> Any:
        """Call the wrapped function with ``state`` and return its result."""
        return self.func(state)


def _hook_name(target: Union[Callable, str]) -> str:
    name = target if isinstance(target, str) else getattr(target, "__name__", None)
    if name not in HOOKS:
        raise ValueError(
            f"cannot bind to {target!r}: it does not name a callback hook; "
            f"pass one of the Callback hooks, e.g. Callback.on_step_training (known hooks: {', '.join(HOOKS)})"
        )
    return name


def bind_to(target: Union[Callable, str]) -> Callable[[Union[StateFunction, LambdaCallback]], LambdaCallback]:
    """Make a decorator that binds a function to the hook named by ``target``.

    The hook is set on the callback instance, so the callback list sees it as overridden. Applied
    to an existing :class:`LambdaCallback`, the same object gains one more hook (this is how hook
    decorators stack).

    Args:
        target: The hook, as the ``Callback`` method (``Callback.on_start``) or its name.

    Returns:
        A decorator taking a function of the state (or a ``LambdaCallback``) and returning the
        ``LambdaCallback``.

    Raises:
        ValueError: If ``target`` does not name a hook.

    Example:
        >>> log_start = bind_to(Callback.on_start)(lambda state: print('started'))
    """
    hook = _hook_name(target)

    def decorator(func: Union[StateFunction, LambdaCallback]) -> LambdaCallback:
        callback = func if isinstance(func, LambdaCallback) else LambdaCallback(func)
        setattr(callback, hook, callback.on_lambda)
        return callback

    return decorator


def _hook_decorator(hook: str) -> Callable[[Union[StateFunction, LambdaCallback]], LambdaCallback]:
    decorator = bind_to(hook)
    decorator.__name__ = decorator.__qualname__ = hook
    decorator.__module__ = __name__
    decorator.__doc__ = (
        f"Turn ``func(state)`` into a callback that runs it at ``{hook}``.\n\n"
        f"Stacks with the other hook decorators: the same callback then runs at every bound hook.\n\n"
        f"Args:\n    func: A function of the state, or a callback made by another hook decorator.\n\n"
        f"Returns:\n    A :class:`LambdaCallback` whose ``{hook}`` returns what ``func`` returns.\n"
    )
    return decorator


# One decorator per hook, spelled out so that IDEs, type checkers and the API docs see each name.
on_init = _hook_decorator("on_init")
on_start = _hook_decorator("on_start")
on_start_epoch = _hook_decorator("on_start_epoch")
on_start_training = _hook_decorator("on_start_training")
on_sample = _hook_decorator("on_sample")
on_forward = _hook_decorator("on_forward")
on_criterion = _hook_decorator("on_criterion")
on_backward = _hook_decorator("on_backward")
on_step_training = _hook_decorator("on_step_training")
on_end_training = _hook_decorator("on_end_training")
on_start_validation = _hook_decorator("on_start_validation")
on_sample_validation = _hook_decorator("on_sample_validation")
on_forward_validation = _hook_decorator("on_forward_validation")
on_criterion_validation = _hook_decorator("on_criterion_validation")
on_step_validation = _hook_decorator("on_step_validation")
on_end_validation = _hook_decorator("on_end_validation")
on_end_epoch = _hook_decorator("on_end_epoch")
on_checkpoint = _hook_decorator("on_checkpoint")
on_end = _hook_decorator("on_end")


def add_to_loss(func: StateFunction) -> LambdaCallback:
    """Make a callback that adds ``func(state)`` to the loss after each criterion.

    Runs at ``on_criterion`` and ``on_criterion_validation``. The sum is out of place
    (``state[LOSS] = state[LOSS] + value``), so it keeps the autograd graph and also works when the
    base loss is a leaf zero tensor (a Trial without a criterion).

    Args:
        func: A function of the state returning the term to add.

    Returns:
        The callback.

    Example:
        >>> @add_to_loss
        ... def l1_penalty(state):
        ...     return sum(p.abs().sum() for p in state[torchbearer.MODEL].parameters())
    """

    @functools.wraps(func)
    def add(state: dict) -> None:
        state[_keys.LOSS] = state[_keys.LOSS] + func(state)

    callback = bind_to("on_criterion")(add)
    return bind_to("on_criterion_validation")(callback)


def count_args(fcn: Callable) -> int:
    """Return the number of parameters in ``fcn``'s signature (``self`` counts for plain functions)."""
    return len(inspect.signature(fcn).parameters)


_Predicate = Callable[[dict, Any, dict], bool]
"""``predicate(memory, owner, state) -> run?``; ``memory`` is a dict private to one guarded scope."""

_guard_ids = itertools.count()


def _is_method(fcn: Callable) -> bool:
    """True for a plain function ``(self, state)`` about to become a method of a Callback subclass."""
    return not inspect.ismethod(fcn) and count_args(fcn) == 2


def _guard(fcn: Union[Callable, LambdaCallback], predicate: _Predicate) -> Any:
    """Wrap ``fcn`` so it runs only when ``predicate`` allows; skipped calls return ``None``.

    The predicate's memory is per callback instance for methods and per wrapped function
    otherwise (a decorated callback's hooks all share its one function, hence one memory).
    """
    if isinstance(fcn, LambdaCallback):
        fcn.func = _guard(fcn.func, predicate)
        return fcn
    if _is_method(fcn):
        memory_key = next(_guard_ids)

        @functools.wraps(fcn)
        def method(self: Any, state: dict) -> Any:
            memories = vars(self).setdefault("_torchbearer_guard_memory", {})
            memory = memories.setdefault(memory_key, {})
            return fcn(self, state) if predicate(memory, self, state) else None

        return method

    memory: dict = {}

    @functools.wraps(fcn)
    def function(state: dict) -> Any:
        return fcn(state) if predicate(memory, fcn, state) else None

    return function


def _condition_caller(condition: Callable) -> Callable[[Any, dict], Any]:
    """Call ``condition(self, state)`` if it takes two parameters, else ``condition(state)``."""
    try:
        takes_self = count_args(condition) == 2
    except (TypeError, ValueError):  # no inspectable signature (some builtins): assume (state)
        takes_self = False
    if takes_self:
        return condition
    return lambda owner, state: condition(state)


def only_if(condition_expr: Callable) -> Callable[[Any], Any]:
    """Make a decorator that runs a callback (or callback method) only when a condition holds.

    Works on a decorated function (guarding every hook bound to it) or on a method of a
    ``Callback`` subclass, before or after the hook decorators.

    Args:
        condition_expr: ``condition(state)`` or ``condition(self, state)`` returning a truthy
            value to run. ``self`` is the callback instance for methods and the wrapped function
            for decorated functions.

    Returns:
        A decorator.

    Example:
        >>> @only_if(lambda state: state[torchbearer.BATCH] % 10 == 0)
        ... @on_step_training
        ... def every_tenth(state):
        ...     print(state[torchbearer.METRICS]['running_loss'])
    """
    call = _condition_caller(condition_expr)

    def decorator(fcn: Any) -> Any:
        return _guard(fcn, lambda memory, owner, state: call(owner, state))

    return decorator


def _first_call(memory: dict, owner: Any, state: dict) -> bool:
    if memory.get("fired"):
        return False
    memory["fired"] = True
    return True


def _first_call_of_epoch(memory: dict, owner: Any, state: dict) -> bool:
    epoch = state[_keys.EPOCH]
    if "epoch" in memory and memory["epoch"] == epoch:
        return False
    memory["epoch"] = epoch
    return True


def once(fcn: Any) -> Any:
    """Run a callback (or callback method) on its first call only.

    The scope is the callback instance for methods and the decorated callback for functions
    (so a callback bound to several hooks fires once in total). Guards apply outermost first, and
    ``once`` counts every call that reaches it: ``only_if(cond)(once(cb))`` fires the first time
    ``cond`` holds, while ``once(only_if(cond)(cb))`` spends its one call on the first call.

    Args:
        fcn: A decorated callback, a function of the state, or a method ``(self, state)``.

    Returns:
        The guarded callback or function.

    Example:
        >>> @once
        ... @on_step_training
        ... def announce(state):
        ...     print('training started')
    """
    return _guard(fcn, _first_call)


def once_per_epoch(fcn: Any) -> Any:
    """Run a callback (or callback method) on its first call in each epoch.

    It remembers the last ``state[EPOCH]`` it fired at and fires again when that changes.
    ``evaluate`` and ``predict`` run with ``EPOCH == 0``, so after training epoch 0 they count as a
    new epoch. Scoped like :func:`once`.

    Args:
        fcn: A decorated callback, a function of the state, or a method ``(self, state)``.

    Returns:
        The guarded callback or function.
    """
    return _guard(fcn, _first_call_of_epoch)
