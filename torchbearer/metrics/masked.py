"""Per-sample values with a 0/1 mask, and the sums and counts every aggregator takes of them.

A metric that must leave some samples out (accuracy with ``ignore_index``) returns a
:class:`Masked` instead of dropping those samples with boolean indexing, which would make the host
wait for the device to learn how many samples remain. A masked-out entry counts in no sum and no
count, so aggregators over a :class:`Masked` give exactly the statistics of the kept samples.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple, Optional, Union

import torch

Dim = Optional[Union[int, tuple[int, ...]]]
Count = Union[int, torch.Tensor]


class Unequal(NamedTuple):
    """The mask ``targets != ignore_index``, left uncomputed: aggregators compare a group of batches at once.

    Example:
        >>> Masked(correct, Unequal(y_true, -100))  # doctest: +SKIP
    """

    targets: torch.Tensor
    ignore_index: Any


class Masked(NamedTuple):
    """Values and a mask of the same shape (or one that broadcasts to it); entries where the mask is 0 do not count.

    The mask is a tensor, or an :class:`Unequal` that saves a device operation per batch.

    Example:
        >>> correct = (y_pred.argmax(1) == y_true).float()  # doctest: +SKIP
        >>> Masked(correct, y_true != -100)  # doctest: +SKIP
    """

    values: torch.Tensor
    mask: torch.Tensor | Unequal


def mask_tensor(mask: torch.Tensor | Unequal | Any) -> torch.Tensor:
    """A :class:`Masked`'s mask as a tensor whose nonzero entries count."""
    if type(mask) is Unequal:
        return mask.targets != mask.ignore_index
    return torch.as_tensor(mask)


def _stacked_mask(masks: list) -> torch.Tensor:
    """The masks of a group of batches stacked on a new dim 0, as booleans."""
    if set(map(type, masks)) == {Unequal}:
        ignored = {mask.ignore_index for mask in masks}
        if len(ignored) == 1:  # one comparison for the whole group
            return torch.stack([mask.targets for mask in masks]) != ignored.pop()
    keep = torch.stack([mask_tensor(mask) for mask in masks])
    return keep if keep.dtype == torch.bool else keep != 0


_WIDE_ENOUGH = (torch.float32, torch.float64)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32, so half-precision and integer inputs sum without overflow or truncation."""
    if dtype in _WIDE_ENOUGH:
        return dtype
    if dtype.is_floating_point:
        return torch.promote_types(dtype, torch.float32)
    return torch.float32


def as_weighted(value: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a metric value into floating values and 0/1 weights (``None`` when every entry counts).

    Masked-out entries are set to 0 so that a NaN or inf there cannot leak into a sum.

    Args:
        value: A tensor, a Python number or a :class:`Masked`.

    Returns:
        ``(values, weights)``, both detached; ``weights`` has the shape of ``values``.
    """
    if isinstance(value, Masked):
        values = value.values.detach()
        values = values.to(_accumulation_dtype(values.dtype))
        keep = (mask_tensor(value.mask).detach() != 0).expand_as(values)
        return values.masked_fill(~keep, 0), keep.to(values.dtype)
    values = torch.as_tensor(value).detach()
    return values.to(_accumulation_dtype(values.dtype)), None


def reduce_sum(values: torch.Tensor, dim: Dim, keepdim: bool = False) -> torch.Tensor:
    """Sum over ``dim`` (every element when ``dim`` is ``None``)."""
    if dim is None:
        return values.sum()
    return values.sum(dim, keepdim=keepdim)


def reduce_count(values: torch.Tensor, weights: torch.Tensor | None, dim: Dim, keepdim: bool = False) -> Count:
    """How many entries :func:`reduce_sum` added up: a Python int without weights, else a tensor."""
    if weights is not None:
        return reduce_sum(weights, dim, keepdim)
    if dim is None:
        return values.numel()
    dims = (dim,) if isinstance(dim, int) else dim
    return math.prod(values.shape[d] for d in dims)


def at_least_one(count: Count) -> Count:
    """``count`` raised to 1 where it is 0, for a division that must not produce NaN."""
    if isinstance(count, torch.Tensor):
        return count.clamp_min(1)
    return max(count, 1)


class Batches:
    """The values of several batches stacked on a new dim 0, ready to sum: at least float32, masked-out
    entries zeroed, with ``keep`` marking the entries that count (``None`` when all do).

    A root metric that computes a group of batches at once (see :class:`~torchbearer.metrics.MetricTree`)
    hands its children one of these, so they need not stack the values again.
    """

    __slots__ = ("values", "keep")

    def __init__(self, values: torch.Tensor, keep: torch.Tensor | None) -> None:
        self.values = values
        self.keep = keep

    def __len__(self) -> int:
        return self.values.shape[0]

    def split(self) -> list[Any]:
        """One value per batch: a tensor, or a :class:`Masked` where entries were left out."""
        if self.keep is None:
            return list(self.values.unbind(0))
        return [Masked(values, keep) for values, keep in zip(self.values.unbind(0), self.keep.unbind(0))]


def stack_batches(values: list[Any]) -> Batches | None:
    """A group of same-shaped per-batch values stacked into :class:`Batches`.

    Returns ``None`` when the group mixes shapes or kinds of value (masked and plain, tensors and numbers).
    """
    kinds = set(map(type, values))  # map and set, not generator expressions: this runs every few batches
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind is type(None):
        return None
    if kind is Masked:
        parts = [value.values for value in values]
        if not all(map(torch.is_tensor, parts)):
            parts = list(map(torch.as_tensor, parts))
    else:
        parts = values if kind is torch.Tensor else list(map(torch.as_tensor, values))
    if len(set(map(_shape, parts))) != 1:
        return None
    stacked = torch.stack(parts)
    accumulation_dtype = _accumulation_dtype(stacked.dtype)
    if stacked.dtype != accumulation_dtype:
        stacked = stacked.to(accumulation_dtype)
    if kind is not Masked:
        return Batches(stacked, None)
    keep = _stacked_mask([value.mask for value in values])
    if keep.shape != stacked.shape:
        keep = keep.expand_as(stacked)
    return Batches(stacked.where(keep, 0.0), keep)


def _as_batches(values: list[Any] | Batches, dim: Dim) -> Batches | None:
    """``values`` as :class:`Batches` when they sum over every entry and stack; else ``None``."""
    if dim is not None:
        return None
    return values if type(values) is Batches else stack_batches(values)


def _as_list(values: list[Any] | Batches) -> list[Any]:
    return values.split() if type(values) is Batches else values


_shape = operator.attrgetter("shape")


def _per_batch(stacked: torch.Tensor) -> torch.Tensor:
    """Stacked batches as a matrix: one row of entries per batch."""
    return stacked if stacked.dim() == 2 else stacked.reshape(stacked.shape[0], -1)


def _runs(values: list[Any]) -> list[list[Any]]:
    """``values`` cut into consecutive runs of the same kind and shape, each of which stacks."""
    runs: list[list[Any]] = []
    last = None
    for value in values:
        key = (type(value), value.values.shape if type(value) is Masked else getattr(value, "shape", None))
        if key != last:
            runs.append([])
            last = key
        runs[-1].append(value)
    return runs


def sum_and_count(values: list[Any] | Batches, dim: Dim) -> tuple[torch.Tensor, Count]:
    """The sum and entry count of a group of per-batch values, in a few device operations for the group.

    Args:
        values: Per-batch metric values (tensors, numbers or :class:`Masked`), already detached, or :class:`Batches`.
        dim: Dimension(s) of each value to sum over; ``None`` for all.

    Returns:
        ``(sum, count)``: the sum over the group (and ``dim``), and how many entries it holds
        (a Python int without masks, else a tensor).
    """
    group = _as_batches(values, dim)
    values = _as_list(values) if group is None else values
    runs = _runs(values) if group is None and dim is None else []
    if len(runs) > 1:  # e.g. a smaller last batch: each run of equal shapes is stacked
        sums_and_counts = [sum_and_count(run, dim) for run in runs]
        return sum(total for total, _ in sums_and_counts), sum(count for _, count in sums_and_counts)
    if group is None:
        weighted = [as_weighted(value) for value in values]
        total = sum(reduce_sum(part, dim) for part, _ in weighted)
        return total, sum(reduce_count(part, weights, dim) for part, weights in weighted)
    stacked, keep = group.values, group.keep
    return stacked.sum(), stacked.numel() if keep is None else keep.sum(dtype=stacked.dtype)


def batch_means(values: list[Any] | Batches, dim: Dim) -> torch.Tensor:
    """Each batch's mean stacked with its weight (1, or 0 for a batch whose entries are all masked out).

    Args:
        values: Per-batch metric values (tensors, numbers or :class:`Masked`), already detached, or :class:`Batches`.
        dim: Dimension(s) each batch is averaged over; ``None`` for all.

    Returns:
        One row per batch along dim 0: ``result[i, 0]`` is batch ``i``'s mean, ``result[i, 1]`` its weight.
        Same-shaped batches are reduced together in a few device operations for the whole group.
    """
    group = _as_batches(values, dim)
    values = _as_list(values) if group is None else values
    runs = _runs(values) if group is None and dim is None else []
    if len(runs) > 1:  # e.g. a smaller last batch: each run of equal shapes is stacked
        return torch.cat([batch_means(run, dim) for run in runs])
    if group is not None:
        stacked, keep = group.values, group.keep
        if keep is None and stacked.shape[1:].numel() == 1:  # one value per batch (a loss): it is the batch's mean
            means = stacked if stacked.dim() == 1 else stacked.reshape(len(values))
            return torch.stack((means, torch.ones_like(means)), 1)
        totals = _per_batch(stacked).sum(1)
        if keep is None:
            means, present = totals / max(stacked.shape[1:].numel(), 1), torch.ones_like(totals)
        else:
            counts = _per_batch(keep).sum(1, dtype=totals.dtype)  # whole numbers, so clamping at 1 marks the present
            means, present = totals / counts.clamp_min(1), counts.clamp_max(1)
        return torch.stack((means, present), 1)
    rows = []
    for value in values:
        part, weights = as_weighted(value)
        total = reduce_sum(part, dim)
        count = reduce_count(part, weights, dim)
        present = (count > 0).to(total.dtype) if isinstance(count, torch.Tensor) else torch.full_like(total, count > 0)
        row = torch.stack((total / at_least_one(count), present))
        if rows and rows[-1].shape != row.shape:
            rows = []  # a window starts afresh when the shape changes: the earlier rows would be dropped anyway
        rows.append(row)
    return torch.stack(rows)
