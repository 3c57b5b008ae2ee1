"""The two classes users extend, :class:`Callback` and :class:`Metric`, and the list of hooks.

A leaf module: it imports nothing else from torchbearer, so that a state key can be a metric
(``torchbearer.state``) without an import circle. Users import these from ``torchbearer`` or,
as in torchbearer 0.5, from ``torchbearer.bases``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
