"""Values combined across ranks at the end of a pass: metric sums and counts, and predictions.

Metric aggregates (:mod:`torchbearer.metrics.aggregators`, ``EpochLambda``) ask :func:`cross_rank` at
the start of a pass and pool their state through it at the end, so every rank sees the metrics of the
whole data. The collectives run on the CPU group, once per pass, never per batch.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

import torch
from torch import distributed as dist

from torchbearer.distributed.settings import settings_of
from torchbearer.state import DEVICE


class CrossRank:
    """Collectives for end-of-pass values, over a CPU (gloo) group; every rank must call them together."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (tensors moved to the CPU), in rank order."""
        gathered: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(gathered, _to_cpu(value), group=self.group)
        return gathered

    def sum(self, *values: Any) -> tuple[Any, ...]:
        """The element-wise sums over the ranks of ``values`` (numbers or tensors), added in rank order."""
        return tuple(functools.reduce(operator.add, column) for column in zip(*self.gather(values)))


def cross_rank(state: Mapping) -> CrossRank | None:
    """What a metric uses to combine its end-of-pass value across ranks; ``None`` outside a distributed Trial.

    Metrics call it in ``reset(state)`` and keep the result for ``process_final``.
    """
    settings = settings_of(state)
    if settings is None or not settings.active:
        return None
    return CrossRank(settings.cpu_group)


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor (in nested lists, tuples and dicts) moved to the CPU and detached."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    return value


def gather_predictions(predictions: Any, state: Mapping) -> Any:
    """All ranks' predictions in data set order (rank order), on this rank's device.

    A tensor is concatenated along dim 0; a list of per-batch outputs is joined into one list.
    Outside a distributed Trial ``predictions`` is returned unchanged.
    """
    ranks = cross_rank(state)
    if ranks is None:
        return predictions
    parts = [part for part in ranks.gather(predictions) if not (isinstance(part, list) and not part)]
    if parts and all(isinstance(part, torch.Tensor) for part in parts):
        try:
            return torch.cat(parts, 0).to(state[DEVICE])
        except RuntimeError:  # ranks' outputs of different shapes: keep them as a list, as one process would
            pass
    return [item for part in parts for item in (part if isinstance(part, list) else [part])]
