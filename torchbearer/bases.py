"""The two base classes users extend (:class:`Callback`, :class:`Metric`) and small shared helpers.

``torchbearer.state`` imports :class:`Metric` from here (a :class:`~torchbearer.state.StateKey` is a
metric), so this module reads state keys through the module object at call time only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch

import torchbearer.state as _keys

HOOKS: tuple[str, ...] = (
    "on_init",
    "on_start",
    "on_start_epoch",
    "on_start_training",
    "on_sample",
    "on_forward",
    "on_criterion",
    "on_backward",
    "on_step_training",
    "on_end_training",
    "on_start_validation",
    "on_sample_validation",
    "on_forward_validation",
    "on_criterion_validation",
    "on_step_validation",
    "on_end_validation",
    "on_end_epoch",
    "on_checkpoint",
    "on_end",
)
"""Every callback hook, in the order a ``run`` first reaches it."""


class Callback:
    """Base class for callbacks: override any hook; each receives the state dict.

    Hooks a subclass does not override are never called (the callback list skips them), so an
    unused hook costs nothing.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_step_training(self, state):
        ...         print(state[torchbearer.METRICS]['running_loss'])
    """

    def state_dict(self) -> dict:
        """Return what this callback needs to resume (plain types only)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> Callback:
        """Restore from :meth:`state_dict` output; returns self."""
        return self

    def __str__(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def reads_batch_metrics(self) -> bool:
        """Whether this callback's batch hooks (``on_sample`` to ``on_step_training``, and the
        ``_validation`` ones) may read the per-batch metric values, ``state[METRICS]``.

        True unless a subclass knows better. When no callback with a batch hook reads them (nor
        anything else, see ``torchbearer.BATCH_METRICS_UNREAD``), the metrics compute them less often.
        """
        return True

    def on_init(self, state: dict) -> None:
        """Once, when the Trial is constructed, with the trial's persistent state."""

    def on_start(self, state: dict) -> None:
        """At the start of ``run``, ``evaluate`` or ``predict``."""

    def on_start_epoch(self, state: dict) -> None:
        """At the start of each epoch."""

    def on_start_training(self, state: dict) -> None:
        """Before the first training batch of an epoch."""

    def on_sample(self, state: dict) -> None:
        """After a training batch is loaded into ``X`` / ``Y_TRUE``."""

    def on_forward(self, state: dict) -> None:
        """After the training forward pass (``Y_PRED`` is set)."""

    def on_criterion(self, state: dict) -> None:
        """After the training loss is computed (``LOSS`` is set)."""

    def on_backward(self, state: dict) -> None:
        """After the backward pass, before the optimizer steps."""

    def on_step_training(self, state: dict) -> None:
        """After the optimizer step and the batch metrics."""

    def on_end_training(self, state: dict) -> None:
        """After the last training batch of an epoch."""

    def on_start_validation(self, state: dict) -> None:
        """Before the first validation (or evaluate/predict) batch."""

    def on_sample_validation(self, state: dict) -> None:
        """After a validation batch is loaded."""

    def on_forward_validation(self, state: dict) -> None:
        """After the validation forward pass."""

    def on_criterion_validation(self, state: dict) -> None:
        """After the validation loss is computed."""

    def on_step_validation(self, state: dict) -> None:
        """After each validation batch."""

    def on_end_validation(self, state: dict) -> None:
        """After the last validation batch."""

    def on_end_epoch(self, state: dict) -> None:
        """At the end of an epoch, before its history record is appended."""

    def on_checkpoint(self, state: dict) -> None:
        """After the epoch's history record is appended (``run`` only)."""

    def on_end(self, state: dict) -> None:
        """At the end of ``run``, ``evaluate`` or ``predict``."""


class Metric:
    """Base class for metrics.

    A top-level metric's :meth:`process` receives the state and returns a ``{name: value}`` dict;
    a metric inside a tree receives its parent's output. Values may stay on the device: the Trial
    moves them to the host once per pass.

    Args:
        name: The metric's name, used for its output keys.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name

    def process(self, *args: Any) -> Any:
        """Per-batch value (``None`` for no output)."""
        return None

    def process_final(self, *args: Any) -> Any:
        """End-of-pass value (``None`` for no output)."""
        return None

    def eval(self, data_key: Any = None) -> None:
        """Switch to evaluation of the data set named by ``data_key``."""

    def train(self) -> None:
        """Switch to training mode."""

    def reset(self, state: Mapping) -> None:
        """Clear accumulated values before a pass."""

    def state_dict(self) -> dict:
        """Return what this metric needs to continue exactly after a resume (plain types only)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> Metric:
        """Restore from :meth:`state_dict` output; returns self."""
        return self


def get_metric(self_tag: str, state: Mapping, metric_key: str) -> Any:
    """Return ``state[METRICS][metric_key]`` for a callback that monitors a metric.

    Returns ``None`` (and warns, naming the known metrics) when the metric is missing, except for
    ``val_`` metrics during a test-set evaluation, which are skipped silently.
    """
    metrics = state[_keys.METRICS]
    if metric_key in metrics:
        return metrics[metric_key]
    if _keys.DATA in state and state[_keys.DATA] == _keys.TEST_DATA and "val_" in metric_key:
        return None
    warnings.warn(
        f"{self_tag}: Failed to retrieve key `{metric_key}` from metrics. Available metrics: {sorted(metrics)}",
        stacklevel=2,
    )
    return None


Citable = TypeVar("Citable")


def cite(bibtex: str) -> Callable[[Citable], Citable]:
    """Decorator that adds a BibTeX citation to a class's or function's docstring.

    The entry goes just before the ``Args:`` / ``Returns:`` section (or at the end).

    Example:
        >>> @cite('@article{x, title={X}}')
        ... def method(): '''Does X.'''
    """

    def decorator(target: Citable) -> Citable:
        doc = target.__doc__ or ""
        block = "::\n\n" + "\n".join("    " + line for line in bibtex.strip().splitlines()) + "\n\n"
        lines = doc.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.strip() in ("Args:", "Returns:"):
                indent = line[: len(line) - len(line.lstrip())]
                indented = "".join(indent + part if part.strip() else part for part in block.splitlines(True))
                lines.insert(index, indented)
                break
        else:
            lines.append("\n\n" + block)
        try:
            target.__doc__ = "".join(lines)
        except AttributeError:  # some builtins have read-only docstrings
            pass
        return target

    return decorator


no_grad = torch.no_grad
enable_grad = torch.enable_grad


def base_closure(x, model, y_pred, y_true, crit, loss, opt) -> Callable[[dict], Any]:
    """Build a training closure over the given state keys.

    The closure zeroes gradients (at the start of an accumulation group), runs the forward pass and
    the criterion (under autocast when mixed precision is on), runs backward, calls ``on_forward``,
    ``on_criterion`` and ``on_backward`` between them, and returns the loss so closure-based
    optimizers (LBFGS) work. It does not step the optimizer.

    Its attribute ``plain_for(state)`` gives the variant the training loop uses for a plain pass
    (full precision, no accumulation): the same steps, hooks and errors, decided once per pass.
    """
    from torchbearer import calling, precision

    def closure(state: dict) -> Any:
        callbacks = state[_keys.CALLBACK_LIST]
        if precision.starts_accumulation(state):
            state[opt].zero_grad()
        with precision.autocast(state):
            state[y_pred] = calling.call_model(state, state[model], state[x])
            callbacks.on_forward(state)
            state[loss] = calling.call_criterion(state, state[crit], state[y_pred], state[y_true])
            callbacks.on_criterion(state)
        precision.backward(state, state[loss])
        callbacks.on_backward(state)
        return state[loss]

    def plain_for(state: dict) -> Callable[[dict], Any] | None:
        """The same closure for a plain pass (see ``precision.training_step``) whose model is called as
        ``model(*x)`` and criterion as ``criterion(y_pred, y_true)``, or None when that is not known.

        It runs the same steps and hooks, with the same errors, without deciding again on every batch
        how to call the model and the criterion or whether autocast, accumulation or scaling apply.
        """
        pass_model, pass_criterion = state[model], state[crit]
        conventions = (calling.model_takes_state(pass_model), calling.criterion_takes_state(pass_criterion))
        if conventions != (False, False):
            return None

        def plain_closure(state: dict) -> Any:
            if state[model] is not pass_model or state[crit] is not pass_criterion:
                return closure(state)  # a callback swapped them during the pass
            callbacks = state[_keys.CALLBACK_LIST]
            state[opt].zero_grad()
            state[y_pred] = calling.forward(pass_model, state[x])
            callbacks.on_forward(state)
            state[loss] = calling.loss_on_outputs(pass_criterion, state[y_pred], state[y_true])
            callbacks.on_criterion(state)
            precision.plain_backward(state, state[loss])
            callbacks.on_backward(state)
            return state[loss]

        return plain_closure

    closure.plain_for = plain_for
    return closure


def standard_closure() -> Callable[[dict], Any]:
    """The Trial's default closure, over the standard keys."""
    return base_closure(_keys.X, _keys.MODEL, _keys.Y_PRED, _keys.Y_TRUE, _keys.CRITERION, _keys.LOSS, _keys.OPTIMIZER)
