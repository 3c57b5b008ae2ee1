"""Per-sample values with a 0/1 mask, and the sums and counts every aggregator takes of them.

A metric that must leave some samples out (accuracy with ``ignore_index``) returns a
:class:`Masked` instead of dropping those samples with boolean indexing, which would make the host
wait for the device to learn how many samples remain. A masked-out entry counts in no sum and no
count, so aggregators over a :class:`Masked` give exactly the statistics of the kept samples.
"""

from __future__ import annotations

import math
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


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32, so half-precision and integer inputs sum without overflow or truncation."""
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
        keep = (value.mask.detach() != 0).expand_as(values)
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
