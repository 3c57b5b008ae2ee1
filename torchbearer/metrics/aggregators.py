"""Aggregators: metrics that summarise their parent's per-batch output over a pass or a window of batches.

They never move a value to the host: totals, counts and windows are device tensors, and every
result is a tensor that the Trial converts to a Python number with all the others at the end of
the pass. A :class:`~torchbearer.metrics.masked.Masked` input counts only its unmasked entries.
``None`` inputs (no value this batch) are skipped.

Inside a ``MetricTree`` an aggregator receives the values of several batches at once, when
something reads its output or a few dozen batches have waited (see :mod:`torchbearer.metrics.metrics`).
:class:`Mean` and :class:`RunningMetric` take such a group through the optional
``process_group(values, samples)``; ``process(value)`` is the same for a group of one.
"""

from __future__ import annotations

import abc
import collections
import itertools
import operator
from collections.abc import Sequence
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.distributed import cross_rank
from torchbearer.metrics.masked import (
    Count,
    Dim,
    as_weighted,
    at_least_one,
    batch_means,
    reduce_count,
    reduce_sum,
    sum_and_count,
)
from torchbearer.metrics.metrics import AdvancedMetric


def _snapshot(value: Any) -> Any:
    """A copy of a tensor (so later in-place updates cannot reach a saved state); other values as they are."""
    return value.clone() if isinstance(value, torch.Tensor) else value


class Mean(Metric):
    """Mean over the pass, in which every sample counts once.

    A value with one entry per sample (an accuracy) adds each (unmasked) entry. A single number
    per batch (a loss, the mean over its batch) counts once for each sample of its batch when
    the tree knows how many there are, so the mean over the pass does not depend on the batch
    size, the order of the batches or the number of processes. A pass without values gives ``None``.

    Args:
        name: The metric's name.
        dim: Dimension(s) to average over; ``None`` for all.
    """

    def __init__(self, name: str, dim: Dim = None) -> None:
        super().__init__(name)
        self._dim = dim
        self.reset({})

    def process(self, *args: Any) -> None:
        return self.process_group(args[:1], (None,))

    def process_group(self, values: Sequence[Any], samples: Sequence[int | None]) -> None:
        """Add a group of batches: their values and the number of samples in each (see :func:`sum_and_count`)."""
        total, count = sum_and_count(values, samples, self._dim)
        if self._batches:
            total, count = self._total + total, self._count + count
        self._total, self._count = total, count
        self._batches += len(values) - sum(map(operator.is_, values, itertools.repeat(None)))  # at C speed

    def process_final(self, *args: Any) -> torch.Tensor | None:
        total, count, batches = self._total, self._count, self._batches
        if self._ranks is not None:  # a distributed pass: the sums of every rank
            total, count, batches = self._ranks.sum(total, count, batches)
        return total / count if batches else None

    def reset(self, state: Any) -> None:
        self._total: Any = 0.0
        self._count: Count = 0
        self._batches = 0
        self._ranks = cross_rank(state)

    def state_dict(self) -> dict:
        """The pass's total, count and number of batches so far."""
        return {"total": _snapshot(self._total), "count": _snapshot(self._count), "batches": self._batches}

    def load_state_dict(self, state_dict: dict) -> Mean:
        """Continue the pass from the totals saved by :meth:`state_dict`."""
        self._total = state_dict["total"]
        self._count = state_dict["count"]
        self._batches = state_dict["batches"]
        return self


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
        if self._ranks is not None:  # a distributed pass: pool the moments of every rank
            return _pooled_variance(self._ranks.gather(self._moments()), self._unbiased)
        if not self._batches:
            return None
        spread = self._sum_squares - self._sum * self._sum / self._count
        degrees_of_freedom = self._count - 1 if self._unbiased else self._count
        return (spread / degrees_of_freedom).clamp_min(0)

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(count, mean, sum of squared deviations from the mean) of the values seen, or None before any."""
        if not self._batches:
            return None
        count = torch.as_tensor(self._count, dtype=self._sum.dtype, device=self._sum.device)
        offset = self._sum / count
        return count, self._shift.reshape(offset.shape) + offset, self._sum_squares - self._sum * offset

    def reset(self, state: Any) -> None:
        self._shift: torch.Tensor | None = None
        self._sum: Any = 0.0
        self._sum_squares: Any = 0.0
        self._count: Count = 0
        self._batches = 0
        self._ranks = cross_rank(state)

    def state_dict(self) -> dict:
        """The pass's shifted sums, count, number of batches and (once a batch was seen) the shift."""
        state = {
            "sum": _snapshot(self._sum),
            "sum_squares": _snapshot(self._sum_squares),
            "count": _snapshot(self._count),
            "batches": self._batches,
        }
        if self._shift is not None:
            state["shift"] = _snapshot(self._shift)
        return state

    def load_state_dict(self, state_dict: dict) -> Var:
        """Continue the pass from the sums saved by :meth:`state_dict`."""
        self._shift = state_dict.get("shift")
        self._sum = state_dict["sum"]
        self._sum_squares = state_dict["sum_squares"]
        self._count = state_dict["count"]
        self._batches = state_dict["batches"]
        return self


def _pooled_variance(groups: list, unbiased: bool) -> torch.Tensor | None:
    """The variance of the union of groups given as :meth:`Var._moments` (``None`` for an empty group)."""
    groups = [group for group in groups if group is not None]
    if not groups:
        return None
    count = sum(group_count for group_count, _, _ in groups)
    mean = sum(group_count * group_mean for group_count, group_mean, _ in groups) / count
    spread = sum(squares + n * (group_mean - mean) ** 2 for n, group_mean, squares in groups)
    degrees_of_freedom = count - 1 if unbiased else count
    return (spread / degrees_of_freedom).clamp_min(0)


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
    """The last ``size`` per-batch values, kept as the blocks they were pushed in (joined when read).

    Values arrive a block at a time (a tensor whose dim 0 runs over batches), so a window of 50
    batches refreshed every 10 costs one ``cat`` of a few blocks per read, not 50 single pushes.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._blocks: collections.deque = collections.deque()
        self._rows = 0

    def push(self, value: torch.Tensor) -> None:
        """Store one batch's value."""
        self.push_rows(value.unsqueeze(0))

    def push_rows(self, block: torch.Tensor) -> None:
        """Store the values of several batches, oldest first along dim 0; values of another shape start afresh.

        Blocks wholly older than the last ``size`` values are dropped; the others move to the new block's
        device if it differs (a window restored on the CPU, then fed on a GPU).
        """
        if self._blocks and self._blocks[-1].shape[1:] != block.shape[1:]:
            self._blocks.clear()
            self._rows = 0
        if self._blocks and self._blocks[-1].device != block.device:
            self._blocks = collections.deque(older.to(block.device) for older in self._blocks)
        self._blocks.append(block)
        self._rows += block.shape[0]
        while self._rows - self._blocks[0].shape[0] >= self.size:
            self._rows -= self._blocks.popleft().shape[0]

    def __len__(self) -> int:
        return min(self._rows, self.size)

    def values(self) -> torch.Tensor:
        """The last ``size`` values joined along dim 0, oldest first (on the newest value's device)."""
        blocks = self._blocks
        joined = blocks[0] if len(blocks) == 1 else torch.cat(tuple(blocks))
        return joined[-self.size :] if self._rows > self.size else joined


class RunningMetric(AdvancedMetric, abc.ABC):
    """A statistic over the last ``batch_size`` per-batch values, reported on every training batch.

    Each batch's value from :meth:`_process_train` joins a window on the device; calls number 0,
    ``step_size``, ``2 * step_size``, ... since the last :meth:`reset` recompute :meth:`_step` over
    the window, and every call returns the latest result. ``reset`` only restarts the call count:
    the window carries over from one epoch to the next. Nothing is reported in evaluation mode.

    A group of batches (``process_group``) gives the same result as processing them one by one,
    with :meth:`_step` run once, at the group's last recomputation.

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
        return self.process_group(args[:1], (None,))

    def process_group(self, values: Sequence[Any], samples: Sequence[int | None]) -> Any:
        """Take a group of batches' values (``samples`` is not used); returns the latest result."""
        if self._validating:
            if type(self).process_validate is AdvancedMetric.process_validate:
                return None  # nothing to report in evaluation, for any number of batches
            outputs = [self.process_validate(value) for value in values]
            return outputs[-1] if outputs else None
        count, first_step = len(values), (-self._calls) % self._step_size  # group index of the next recomputation
        self._calls += count
        if first_step >= count:  # no recomputation in this group
            self._push(values)
            return self._result
        last_step = first_step + (count - 1 - first_step) // self._step_size * self._step_size
        self._push(values[: last_step + 1])
        if len(self._window):
            self._result = self._step(self._window.values())
        self._push(values[last_step + 1 :])
        return self._result

    def _push(self, values: Sequence[Any]) -> None:
        """Add the values of consecutive batches to the window."""
        for value in values:
            value = self._process_train(value)
            if value is not None:
                self._window.push(torch.as_tensor(value).detach())

    def process_final_train(self, *args: Any) -> Any:
        return self._result

    def reset(self, state: Any) -> None:
        self._calls = 0

    def state_dict(self) -> dict:
        """The window (stacked, oldest first), the calls since the last reset and the latest result."""
        state: dict = {"calls": self._calls}
        if len(self._window):
            state["window"] = self._window.values().clone()
        if self._result is not None:
            state["result"] = _snapshot(self._result)
        return state

    def load_state_dict(self, state_dict: dict) -> RunningMetric:
        """Refill the window and restore the call count and latest result saved by :meth:`state_dict`."""
        self._window = _Window(self._batch_size)
        if "window" in state_dict:  # oldest first, so the last batch_size values stay
            self._window.push_rows(state_dict["window"])
        self._calls = state_dict["calls"]
        self._result = state_dict.get("result")
        return self


class RunningMean(RunningMetric):
    """Mean of the per-batch means of the last ``batch_size`` batches (a smoothed training curve).

    Every batch counts once, as in torchbearer 0.5, whatever its size. A batch whose samples are
    all masked out does not enter the mean.

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
        blocks = batch_means(args[:1], self._dim)
        return blocks[0][0] if blocks else None

    def _push(self, values: Sequence[Any]) -> None:
        for rows in batch_means(values, self._dim):  # the group's batch means in a few device operations
            self._window.push_rows(rows)

    def _step(self, window: torch.Tensor) -> torch.Tensor:
        # A batch with no entries has mean 0 as well as weight 0, so the weighted sum is the plain sum.
        mean_total, weight_total = window.sum(0).unbind(0)
        return mean_total / weight_total
