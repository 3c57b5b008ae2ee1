"""Aggregators: metrics that summarise their parent's per-batch output over a pass or a window of batches.

They run every batch, so they never move a value to the host: totals, counts and windows are
device tensors, and every result is a tensor that the Trial converts to a Python number with all
the others at the end of the pass. A :class:`~torchbearer.metrics.masked.Masked` input counts only
its unmasked entries. ``None`` inputs (no value this batch) are skipped.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.metrics.masked import Count, Dim, as_weighted, at_least_one, reduce_count, reduce_sum
from torchbearer.metrics.metrics import AdvancedMetric


class Mean(Metric):
    """Mean of every value seen in the pass (element-weighted: every sample counts once).

    For per-sample accuracies this is the accuracy over all samples; for a scalar loss per batch,
    the mean of the batch losses. A pass without values gives ``None``.

    Args:
        name: The metric's name.
        dim: Dimension(s) to average over; ``None`` for all.
    """

    def __init__(self, name: str, dim: Dim = None) -> None:
        super().__init__(name)
        self._dim = dim
        self.reset({})

    def process(self, *args: Any) -> None:
        if args[0] is None:
            return
        values, weights = as_weighted(args[0])
        self._total = self._total + reduce_sum(values, self._dim)
        self._count = self._count + reduce_count(values, weights, self._dim)
        self._batches += 1

    def process_final(self, *args: Any) -> torch.Tensor | None:
        return self._total / self._count if self._batches else None

    def reset(self, state: Any) -> None:
        self._total: Any = 0.0
        self._count: Count = 0
        self._batches = 0


class Var(Metric):
    """Variance of every value seen in the pass.

    Sums are taken around the first batch's mean, which keeps ``E[x²] - E[x]²`` accurate in float32
    even when the mean is large next to the spread.

    Args:
        name: The metric's name.
        unbiased: Divide by ``n - 1`` (Bessel's correction) instead of ``n``.
        dim: Dimension(s) to reduce; ``None`` for all.
    """

    def __init__(self, name: str, unbiased: bool = True, dim: Dim = None) -> None:
        super().__init__(name)
        self._unbiased = unbiased
        self._dim = dim
        self.reset({})

    def process(self, *args: Any) -> None:
        if args[0] is None:
            return
        values, weights = as_weighted(args[0])
        if self._shift is None:
            batch_count = reduce_count(values, weights, self._dim, keepdim=True)
            self._shift = reduce_sum(values, self._dim, keepdim=True) / at_least_one(batch_count)
        centred = values - self._shift
        if weights is not None:
            centred = centred * weights
        self._sum = self._sum + reduce_sum(centred, self._dim)
        self._sum_squares = self._sum_squares + reduce_sum(centred * centred, self._dim)
        self._count = self._count + reduce_count(values, weights, self._dim)
        self._batches += 1

    def process_final(self, *args: Any) -> torch.Tensor | None:
        if not self._batches:
            return None
        spread = self._sum_squares - self._sum * self._sum / self._count
        degrees_of_freedom = self._count - 1 if self._unbiased else self._count
        return (spread / degrees_of_freedom).clamp_min(0)

    def reset(self, state: Any) -> None:
        self._shift: torch.Tensor | None = None
        self._sum: Any = 0.0
        self._sum_squares: Any = 0.0
        self._count: Count = 0
        self._batches = 0


class Std(Var):
    """Standard deviation of every value seen in the pass (square root of :class:`Var`).

    Args:
        name: The metric's name.
        unbiased: Divide by ``n - 1`` (Bessel's correction) instead of ``n``.
        dim: Dimension(s) to reduce; ``None`` for all.
    """

    def process_final(self, *args: Any) -> torch.Tensor | None:
        variance = super().process_final(*args)
        return None if variance is None else variance.sqrt()


class _Window:
    """The last ``size`` values pushed, in a preallocated device ring buffer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffer: torch.Tensor | None = None
        self._next = 0
        self._filled = 0

    def _fits(self, value: torch.Tensor) -> bool:
        buffer = self._buffer
        return (
            buffer is not None
            and buffer.shape[1:] == value.shape
            and buffer.dtype == value.dtype
            and buffer.device == value.device
        )

    def push(self, value: torch.Tensor) -> None:
        """Store ``value``, replacing the oldest once full (a value of another shape/device starts afresh)."""
        if not self._fits(value):
            self._buffer = value.new_empty((self.size, *value.shape))
            self._next = self._filled = 0
        self._buffer[self._next].copy_(value)
        self._next = (self._next + 1) % self.size
        self._filled = min(self._filled + 1, self.size)

    def __len__(self) -> int:
        return self._filled

    def values(self) -> torch.Tensor:
        """The stored values stacked along a new dim 0, oldest first."""
        if self._filled < self.size:
            return self._buffer[: self._filled]
        return torch.cat((self._buffer[self._next :], self._buffer[: self._next]))


class RunningMetric(AdvancedMetric, abc.ABC):
    """A statistic over the last ``batch_size`` per-batch values, reported on every training batch.

    Each call stores the value from :meth:`_process_train` in a device ring buffer; calls number 0,
    ``step_size``, ``2 * step_size``, ... since the last :meth:`reset` recompute :meth:`_step` over
    the window, and every call returns the latest result. ``reset`` only restarts the call count:
    the window carries over from one epoch to the next. Nothing is reported in evaluation mode.

    Args:
        name: The metric's name.
        batch_size: Number of batches in the window.
        step_size: Calls between two recomputations.
    """

    def __init__(self, name: str, batch_size: int = 50, step_size: int = 10) -> None:
        super().__init__(name)
        self._batch_size = batch_size
        self._step_size = step_size
        self._window = _Window(batch_size)
        self._calls = 0
        self._result: Any = None

    @abc.abstractmethod
    def _process_train(self, *args: Any) -> Any:
        """This batch's value (a tensor of the same shape every batch), or ``None`` to store nothing."""

    @abc.abstractmethod
    def _step(self, window: torch.Tensor) -> Any:
        """The statistic of the window: stored values stacked on dim 0, oldest first (valid during the call)."""

    def process_train(self, *args: Any) -> Any:
        value = self._process_train(*args)
        if value is not None:
            self._window.push(torch.as_tensor(value).detach())
        if self._calls % self._step_size == 0 and len(self._window):
            self._result = self._step(self._window.values())
        self._calls += 1
        return self._result

    def process_final_train(self, *args: Any) -> Any:
        return self._result

    def reset(self, state: Any) -> None:
        self._calls = 0


class RunningMean(RunningMetric):
    """Mean of the per-batch means of the last ``batch_size`` batches (a smoothed training curve).

    A batch whose samples are all masked out does not enter the mean.

    Args:
        name: The metric's name.
        batch_size: Number of batches in the window.
        step_size: Calls between two recomputations.
        dim: Dimension(s) each batch is averaged over; ``None`` for all.
    """

    def __init__(self, name: str, batch_size: int = 50, step_size: int = 10, dim: Dim = None) -> None:
        super().__init__(name, batch_size, step_size)
        self._dim = dim

    def _process_train(self, *args: Any) -> torch.Tensor | None:
        """The batch mean stacked with its weight: 1, or 0 when the batch had no unmasked entries."""
        if args[0] is None:
            return None
        values, weights = as_weighted(args[0])
        total = reduce_sum(values, self._dim)
        count = reduce_count(values, weights, self._dim)
        if isinstance(count, torch.Tensor):
            present = (count > 0).to(total.dtype)
        else:
            present = torch.full_like(total, float(count > 0))
        return torch.stack((total / at_least_one(count), present))

    def _step(self, window: torch.Tensor) -> torch.Tensor:
        means, present = window[:, 0], window[:, 1]
        return (means * present).sum(0) / present.sum(0)
