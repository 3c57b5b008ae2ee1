"""``TerminateOnNaN``: stop a run once the loss (or another metric) is NaN or infinite."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import torch

from torchbearer.bases import Callback
from torchbearer.state import METRICS, STOP_TRAINING

_RUNNING_PREFIX = "running_"
_VALIDATION_PREFIX = "val_"


def _watched_keys(monitor: str) -> list[str]:
    """The monitored metric and its epoch-level forms: ``running_loss`` -> running_loss, loss, val_loss."""
    if monitor.startswith(_VALIDATION_PREFIX):
        return [monitor]
    base = monitor[len(_RUNNING_PREFIX) :] if monitor.startswith(_RUNNING_PREFIX) else monitor
    return list(dict.fromkeys([monitor, base, _VALIDATION_PREFIX + base]))


def _is_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    if isinstance(value, (list, tuple)):
        return all(_is_finite(item) for item in value)
    if isinstance(value, numbers.Real):
        return math.isfinite(value)
    return True


class TerminateOnNaN(Callback):
    """Stop training when a monitored metric is NaN or infinite.

    The check runs after every training and validation step and at the end of every epoch, on the
    monitored metric and its epoch-level forms: for ``'running_loss'`` that is ``running_loss``
    (training steps) and ``loss`` / ``val_loss`` (end of epoch). An epoch stopped during training is
    not recorded in the history. If none of these metrics existed during a training epoch, one
    warning is given at its end. A running mean is refreshed every 10 batches (as in 0.5), so a NaN
    batch stops the run at the next refresh, not at that batch.

    Args:
        monitor: The metric to check, by default the running training loss.

    Example:
        >>> trial = Trial(model, optimizer, loss, metrics=['loss'], callbacks=[TerminateOnNaN()])  # doctest: +SKIP
    """

    def __init__(self, monitor: str = "running_loss") -> None:
        self.monitor = monitor
        self._watched = _watched_keys(monitor)
        self._found = False
        self._training = False

    def on_start_epoch(self, state: dict) -> None:
        self._found = False
        self._training = False

    def on_start_training(self, state: dict) -> None:
        self._training = True

    def on_step_training(self, state: dict) -> None:
        self._check(state)

    def on_step_validation(self, state: dict) -> None:
        self._check(state)

    def on_end_epoch(self, state: dict) -> None:
        self._check(state)
        if self._training and not self._found:
            warnings.warn(
                f"TerminateOnNaN: Failed to retrieve key `{self.monitor}` from metrics (also looked for "
                f"{self._watched[1:]}). Available metrics: {sorted(map(str, state[METRICS]))}",
                stacklevel=2,
            )

    def _check(self, state: dict) -> None:
        metrics = state[METRICS]
        for key in self._watched:
            # Reading a per-batch metric converts it to a number: one host-device sync per step,
            # which finding a NaN on the step it appears needs.
            if key in metrics and not _is_finite(metrics[key]):
                print(f"Invalid {key}, terminating")
                state[STOP_TRAINING] = True
            self._found = self._found or key in metrics
