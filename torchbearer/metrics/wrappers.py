"""Wrappers that name a metric's output (:class:`ToDict`) or build a metric from a function of ``(y_pred, y_true)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.distributed import cross_rank
from torchbearer.metrics.metrics import AdvancedMetric, feed_group
from torchbearer.state import BATCH, Y_PRED, Y_TRUE, evaluation_prefix


class ToDict(AdvancedMetric):
    """Turn a metric's raw output ``v`` into ``{name: v}``, or ``{'val_' + name: v}`` in evaluation mode.

    The evaluation prefix follows the data being evaluated: ``test_`` for ``TEST_DATA``, ``train_``
    for ``TRAIN_DATA``, otherwise ``val_``. A ``None`` output stays ``None``.

    Args:
        metric: The metric to wrap; mode changes and resets are forwarded to it.

    Example:
        >>> loss_mean = ToDict(Mean('loss'))
        >>> loss_mean.eval(data_key=torchbearer.TEST_DATA)  # doctest: +SKIP
    """

    def __init__(self, metric: Metric) -> None:
        super().__init__(metric.name)
        self.metric = metric
        self.eval_flag = "val"
        self._eval_name = f"val_{self.name}"

    def _named(self, name: str, value: Any) -> dict | None:
        return None if value is None else {name: value}

    def process(self, *args: Any) -> dict | None:
        return self._named(self._eval_name if self._validating else self.name, self.metric.process(*args))

    def process_group(self, values: Sequence[Any], samples: Sequence[int | None]) -> dict | None:
        """The wrapped metric's output for a group of batches (see :func:`feed_group`), named as by :meth:`process`."""
        value = feed_group(self.metric, values, samples)
        return self._named(self._eval_name if self._validating else self.name, value)

    def process_final_train(self, *args: Any) -> dict | None:
        return self._named(self.name, self.metric.process_final(*args))

    def process_final_validate(self, *args: Any) -> dict | None:
        return self._named(self._eval_name, self.metric.process_final(*args))

    def eval(self, data_key: Any = None) -> None:
        super().eval(data_key=data_key)
        self.eval_flag = evaluation_prefix(data_key)
        self._eval_name = f"{self.eval_flag}_{self.name}"
        self.metric.eval(data_key=data_key)

    def train(self) -> None:
        super().train()
        self.metric.train()

    def reset(self, state: Any) -> None:
        self.metric.reset(state)

    def state_dict(self) -> dict:
        """The wrapped metric's state."""
        return self.metric.state_dict()

    def load_state_dict(self, state_dict: dict) -> ToDict:
        """Load the wrapped metric's state."""
        self.metric.load_state_dict(state_dict)
        return self


class BatchLambda(Metric):
    """A metric computing ``metric_function(y_pred, y_true)`` on every batch (no end-of-pass value).

    Args:
        name: The metric's name.
        metric_function: A function of the batch's predictions and targets.
    """

    def __init__(self, name: str, metric_function: Callable[[Any, Any], Any]) -> None:
        super().__init__(name)
        self.metric_function = metric_function

    def process(self, *args: Any) -> Any:
        state = args[0]
        return self.metric_function(state[Y_PRED], state[Y_TRUE])


class EpochLambda(AdvancedMetric):
    """A metric computing ``metric_function(all_y_pred, all_y_true)`` over every batch of the pass so far.

    Predictions and targets are kept as lists of batch tensors and concatenated along dim 0 only
    when the function runs. In training, with ``running=True``, it also runs on batches 0,
    ``step_size``, ``2 * step_size``, ... and every batch returns the latest result.

    Args:
        name: The metric's name.
        metric_function: A function of all predictions and all targets seen in the pass.
        running: Whether to report a running value during training.
        step_size: Batches between two running computations.
    """

    def __init__(
        self, name: str, metric_function: Callable[[Any, Any], Any], running: bool = True, step_size: int = 50
    ) -> None:
        super().__init__(name)
        self.metric_function = metric_function
        self.running = running
        self.step_size = step_size
        self.reset({})

    def reset(self, state: Any) -> None:
        self._predictions: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._latest: Any = None
        self._ranks = cross_rank(state)

    def state_dict(self) -> dict:
        """The predictions and targets of the pass so far (each concatenated on dim 0) and the latest result."""
        state: dict = {}
        if self._predictions:
            state["predictions"] = torch.cat(self._predictions, dim=0)
            state["targets"] = torch.cat(self._targets, dim=0)
        if self._latest is not None:
            state["latest"] = self._latest
        return state

    def load_state_dict(self, state_dict: dict) -> EpochLambda:
        """Continue the pass from the predictions and targets saved by :meth:`state_dict`."""
        self._predictions = [state_dict["predictions"]] if "predictions" in state_dict else []
        self._targets = [state_dict["targets"]] if "targets" in state_dict else []
        self._latest = state_dict.get("latest")
        return self

    def _collect(self, state: Any) -> None:
        self._predictions.append(state[Y_PRED].detach())
        self._targets.append(state[Y_TRUE].detach())

    def _compute(self) -> Any:
        # keep the concatenation, so the next computation only joins the batches that came after it
        self._predictions = [torch.cat(self._predictions, dim=0)]
        self._targets = [torch.cat(self._targets, dim=0)]
        return self.metric_function(self._predictions[0], self._targets[0])

    def process_train(self, *args: Any) -> Any:
        state = args[0]
        self._collect(state)
        if not self.running:
            return None
        if state[BATCH] % self.step_size == 0:
            self._latest = self._compute()
        return self._latest

    def process_validate(self, *args: Any) -> None:
        self._collect(args[0])

    def _compute_final(self) -> Any:
        if self._ranks is not None:
            return self._compute_over_ranks()
        return self._compute() if self._predictions else None

    def _compute_over_ranks(self) -> Any:
        """The function of every rank's predictions and targets, joined in rank order (a collective)."""
        own = (torch.cat(self._predictions), torch.cat(self._targets)) if self._predictions else None
        parts = [part for part in self._ranks.gather(own) if part is not None]
        if not parts:
            return None
        device = self._predictions[0].device if self._predictions else "cpu"
        predictions = torch.cat([predictions for predictions, _ in parts]).to(device)
        targets = torch.cat([targets for _, targets in parts]).to(device)
        return self.metric_function(predictions, targets)

    def process_final_train(self, *args: Any) -> Any:
        return self._compute_final()

    def process_final_validate(self, *args: Any) -> Any:
        return self._compute_final()
