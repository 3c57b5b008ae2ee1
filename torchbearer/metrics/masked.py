"""Per-sample values with a 0/1 mask, and the sums, counts and batch means aggregators take of them.

A metric that must leave some samples out (accuracy with ``ignore_index``) returns a
:class:`Masked` instead of dropping those samples with boolean indexing, which would make the host
wait for the device to learn how many samples remain. A masked-out entry counts in no sum and no
count, so aggregators over a :class:`Masked` give exactly the statistics of the kept samples.

Aggregators receive the values of several batches at once (see ``MetricTree``); the functions here
reduce a whole group in a few device operations by stacking the batches whose values have the same
shape.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional, Union

import torch

Dim = Optional[Union[int, tuple[int, ...]]]
Count = Union[int, torch.Tensor]


class Masked(NamedTuple):
    """Values and a mask of the same shape (or one that broadcasts to it); entries where the mask is 0 do not count.

    Example:
        >>> correct = (y_pred.argmax(1) == y_true).float()  # doctest: +SKIP
        >>> Masked(correct, y_true != -100)  # doctest: +SKIP
    """

    values: torch.Tensor
    mask: torch.Tensor


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
        values, mask = _summable(value.values), torch.as_tensor(value.mask)
        keep = mask if mask.dtype == torch.bool else mask != 0
        if keep.shape != values.shape:
            keep = keep.expand_as(values)
        return torch.where(keep, values, 0.0), keep.to(values.dtype)
    return _summable(value), None


def _summable(value: Any) -> torch.Tensor:
    """``value`` as a detached tensor of at least float32; no tensor operation when it already is one."""
    tensor = torch.as_tensor(value)
    if tensor.requires_grad:
        tensor = tensor.detach()
    dtype = _accumulation_dtype(tensor.dtype)
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


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


def _is_scalar(value: Any) -> bool:
    """One number for the whole batch (a loss): a single-element tensor, not masked."""
    return isinstance(value, torch.Tensor) and value.numel() == 1


def _as_value(value: Any) -> Any:
    """A tensor or a :class:`Masked` of tensors (Python numbers and lists become tensors)."""
    if isinstance(value, Masked):
        if type(value.values) is torch.Tensor and type(value.mask) is torch.Tensor:
            return value
        return Masked(torch.as_tensor(value.values), torch.as_tensor(value.mask))
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def _shape_of(value: Any) -> tuple:
    """What decides whether two values (from :func:`_as_value`) stack: masked or not, shapes and device."""
    if isinstance(value, Masked):
        return (Masked, value.values.shape, value.mask.shape, value.values.device)
    return (None, value.shape, value.device)


def _stacked(values: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same-shaped values stacked on a new dim 0, as :func:`as_weighted` would give them one by one."""
    if isinstance(values[0], Masked):
        parts, masks = zip(*values)
        return as_weighted(Masked(torch.stack(parts), torch.stack(masks)))
    return as_weighted(torch.stack(values))


_TENSOR_KIND = operator.attrgetter("shape", "device")
_MASKED_KIND = operator.attrgetter("values.shape", "mask.shape", "values.device")


def _one_kind(values: Sequence[Any]) -> bool:
    """Whether the values are all tensors, or all :class:`Masked` tensors, of one shape on one device: then
    they stack as they are. Checked with ``map`` and ``set``, at C speed: this runs for every group."""
    kinds = set(map(type, values))
    if kinds == {torch.Tensor}:
        return len(set(map(_TENSOR_KIND, values))) == 1
    if kinds == {Masked}:
        try:
            return len(set(map(_MASKED_KIND, values))) == 1
        except AttributeError:  # parts that are not tensors
            return False
    return False


def sum_and_count(values: Sequence[Any], samples: Sequence[int | None], dim: Dim) -> tuple[Any, Count]:
    """The sum and entry count of a group of per-batch values, in a few device operations for the group.

    A single-number value (a batch's loss) stands for each of the batch's ``samples``: it counts
    that many times, so the mean over a pass weighs every sample once, however the data was split
    into batches. Any other value counts each of its (unmasked) entries once.

    Args:
        values: Per-batch metric values (tensors, numbers or :class:`Masked`); ``None`` is skipped.
        samples: The number of samples in each batch (``None`` when unknown: a single number then counts once).
        dim: Dimension(s) of each value to sum over; ``None`` for all.

    Returns:
        ``(sum, count)``: the sum over the group (and ``dim``), and how many entries it holds
        (a Python int without masks, else a tensor). ``(0.0, 0)`` for a group without values.
    """
    total: Any = 0.0
    count: Count = 0
    if dim is not None:  # rare: reduce each value on its own
        for value in values:
            if value is not None:
                part, weights = as_weighted(value)
                total, count = total + reduce_sum(part, dim), count + reduce_count(part, weights, dim)
        return total, count
    for part, (members, weight) in enumerate(_stackable_parts(values, samples)):
        stacked, keep = _stacked(members)
        part_total = stacked.sum()
        part_count = stacked.numel() if keep is None else keep.sum()
        if weight != 1:
            part_total, part_count = part_total * weight, part_count * weight
        total, count = (part_total, part_count) if part == 0 else (total + part_total, count + part_count)
    return total, count


def _stackable_parts(values: Sequence[Any], samples: Sequence[int | None]) -> list[tuple[Sequence[Any], int]]:
    """The group split into parts that stack, each with the weight of its values (see :func:`sum_and_count`).

    The usual groups are checked at C speed: all values alike (one part), or all but a pass's short
    last batch (two parts). Any other group is split by shape and weight, value by value.
    """
    if _one_kind(values) and len(set(samples)) == 1:
        return [(values, _weight(values[0], samples[0]))]
    if len(values) > 1 and _one_kind(values[:-1]) and len(set(samples[:-1])) == 1 and _one_kind(values[-1:]):
        return [(values[:-1], _weight(values[0], samples[0])), (values[-1:], _weight(values[-1], samples[-1]))]
    return [(members, key[-1]) for key, members in _groups(values, samples).items()]


def _weight(value: Any, samples: int | None) -> int:
    """How many times each entry of a value counts: a single number once per sample of its batch."""
    return (samples or 1) if _is_scalar(value) else 1


def _groups(values: Sequence[Any], samples: Sequence[int | None]) -> dict[tuple, list]:
    """Values that stack together, by shape and (for single numbers) the weight of their batch."""
    groups: dict[tuple, list] = {}
    for value, size in zip(values, samples):
        if value is None:
            continue
        if type(value) is torch.Tensor:  # the usual case, checked inline: this runs for every batch
            key = (None, value.shape, value.device, (size or 1) if value.numel() == 1 else 1)
        else:
            value = _as_value(value)
            key = (*_shape_of(value), (size or 1) if _is_scalar(value) else 1)
        groups.setdefault(key, []).append(value)
    return groups


def batch_means(values: Sequence[Any], dim: Dim) -> list[torch.Tensor]:
    """Each batch's mean stacked with its weight (1, or 0 for a batch whose entries are all masked out).

    Args:
        values: Per-batch metric values (tensors, numbers or :class:`Masked`); ``None`` is skipped.
        dim: Dimension(s) each batch is averaged over; ``None`` for all.

    Returns:
        Blocks of rows, one block per run of consecutive same-shaped batches (reduced together in a
        few device operations), in order: ``block[i, 0]`` is a batch's mean and ``block[i, 1]`` its weight.
    """
    if _one_kind(values):  # the usual group: one stack
        return [_run_means(values, dim)]
    if len(values) > 1 and _one_kind(values[:-1]) and _one_kind(values[-1:]):  # all but a short last batch
        return [_run_means(values[:-1], dim), _run_means(values[-1:], dim)]
    runs: list[list] = []
    last_shape = None
    for value in values:
        if value is None:
            continue
        if type(value) is torch.Tensor:  # the usual case, checked inline: this runs for every batch
            shape = (None, value.shape, value.device)
        else:
            value = _as_value(value)
            shape = _shape_of(value)
        if shape != last_shape:
            runs.append([])
            last_shape = shape
        runs[-1].append(value)
    return [_run_means(run, dim) for run in runs]


def _run_means(run: list, dim: Dim) -> torch.Tensor:
    """:func:`batch_means` of same-shaped values."""
    stacked, keep = _stacked(run)
    reduced = tuple(range(1, stacked.dim())) if dim is None else _shifted(dim)
    if keep is None:
        totals = stacked.sum(reduced) if reduced else stacked
        count = math.prod(stacked.shape[d] for d in reduced)
        return torch.stack((totals / max(count, 1), torch.ones_like(totals)), 1)
    totals, counts = stacked.sum(reduced), keep.sum(reduced)
    return torch.stack((totals / counts.clamp_min(1), counts.clamp_max(1)), 1)


def _shifted(dim: int | tuple[int, ...]) -> tuple[int, ...]:
    """A per-batch ``dim`` as dims of batches stacked on a new dim 0."""
    dims = (dim,) if isinstance(dim, int) else dim
    return tuple(d + 1 if d >= 0 else d for d in dims)
