"""``EarlyStopping``: stop a run once a monitored metric stops improving.

The helpers :func:`resolve_mode`, :func:`worst_value` and :func:`is_improvement` hold the
"monitor a metric" rules shared with the ``Best`` checkpointer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torchbearer.bases import Callback, get_metric
from torchbearer.devices import unwrap_model
from torchbearer.state import MODEL, STOP_TRAINING


def resolve_mode(mode: str, monitor: str) -> str:
    """``'min'`` or ``'max'`` as given; anything else means ``'max'`` for accuracies, else ``'min'``."""
    if mode in ("min", "max"):
        return mode
    return "max" if "acc" in monitor else "min"


def worst_value(mode: str) -> float:
    """The starting "best" value that any real value improves on: ``+inf`` for min, ``-inf`` for max."""
    return math.inf if mode == "min" else -math.inf


def is_improvement(current: Any, best: Any, mode: str, min_delta: float) -> bool:
    """True when ``current`` beats ``best`` by more than ``min_delta`` in the direction of ``mode``."""
    if mode == "min":
        return current + min_delta < best
    return current - min_delta > best


class EarlyStopping(Callback):
    """Stop training when the monitored metric has not improved for ``patience`` steps.

    A step happens at the end of every epoch (or after every training batch with
    ``step_on_batch=True``). It improves when the value beats the best so far by more than
    ``min_delta``; otherwise a wait counter grows, and when it reaches ``patience`` the run stops
    after the current epoch (``patience=0`` stops at the first epoch without improvement). The
    steps also happen during ``evaluate`` and count towards the patience.

    With ``restore_best_weights=True`` (as in Keras), each improvement copies the model's weights to
    the CPU, and at the end of every ``run`` (stopped early or not; also one ended by an error) the
    model gets the best step's weights back. The copy is part of :meth:`state_dict`, so a run resumed
    from a checkpoint still restores weights from before the checkpoint. ``evaluate`` and ``predict``
    never restore. Nothing is restored when no step improved.

    Args:
        monitor: The metric to watch, e.g. ``'val_loss'`` or ``'acc'``.
        min_delta: The smallest change that counts as an improvement.
        patience: How many steps without improvement to allow.
        mode: ``'min'``, ``'max'`` or ``'auto'`` (``'max'`` if ``'acc'`` is in ``monitor``, else ``'min'``).
        step_on_batch: Step after every training batch (on the running metrics) instead of every epoch.
        restore_best_weights: At the end of each ``run``, load the weights of the best step into the model.

    Example:
        >>> stopper = EarlyStopping(monitor='val_acc', patience=3, min_delta=1e-3, restore_best_weights=True)
        >>> trial = Trial(model, optimizer, loss, metrics=['acc'], callbacks=[stopper])  # doctest: +SKIP
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        mode: str = "auto",
        step_on_batch: bool = False,
        restore_best_weights: bool = False,
    ) -> None:
        self.monitor = monitor
        self.min_delta = min_delta
        self.patience = patience
        self.mode = resolve_mode(mode, monitor)
        self.step_on_batch = step_on_batch
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best = worst_value(self.mode)
        self.best_weights: dict[str, torch.Tensor] | None = None  # CPU copies, with restore_best_weights
        self._trained = False  # this call ran a training pass (a run, not evaluate or predict)

    def state_dict(self) -> dict:
        saved: dict[str, Any] = {"wait": self.wait, "best": self.best}
        if self.best_weights is not None:
            saved["best_weights"] = self.best_weights
        return saved

    def load_state_dict(self, state_dict: dict) -> EarlyStopping:
        self.wait = state_dict["wait"]
        self.best = state_dict["best"]
        self.best_weights = state_dict.get("best_weights")
        return self

    def on_start(self, state: dict) -> None:
        self._trained = False

    def on_start_training(self, state: dict) -> None:
        self._trained = True

    def on_end(self, state: dict) -> None:
        if self.restore_best_weights and self._trained and self.best_weights is not None:
            unwrap_model(state[MODEL]).load_state_dict(self.best_weights)

    def on_step_training(self, state: dict) -> None:
        if self.step_on_batch:  # reads a per-batch metric: one host-device sync per training batch
            self.step(state)

    def on_end_epoch(self, state: dict) -> None:
        if not self.step_on_batch:
            self.step(state)

    def step(self, state: dict) -> None:
        """Compare the monitored value with the best so far and stop the run if patience ran out."""
        current = get_metric("Early Stopping", state, self.monitor)
        if current is None:
            return
        if is_improvement(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = _cpu_copy(unwrap_model(state[MODEL]).state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            state[STOP_TRAINING] = True


def _cpu_copy(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a state dict's tensors (from a GPU: a device-host copy, once per improvement)."""
    return {name: value.detach().to("cpu", copy=True) for name, value in weights.items()}
