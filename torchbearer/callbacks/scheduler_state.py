"""Saving and restoring a PyTorch scheduler's state so that a resumed run continues its learning rate exactly.

:func:`to_plain` turns a scheduler's ``state_dict`` into what ``torch.load(weights_only=True)`` reads, and
:func:`like_template` gives it back the container types the scheduler expects. The optimizer's group settings
are kept around the rebuild (:func:`group_hyperparameters` / :func:`restore_hyperparameters`), as building a
scheduler resets them.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer


def group_hyperparameters(optimizer: Optimizer) -> list[dict]:
    """Copy every param group's settings except its parameters (tensor values are cloned)."""
    return [
        {key: _detached_copy(value) for key, value in group.items() if key != "params"}
        for group in optimizer.param_groups
    ]


def _detached_copy(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def restore_hyperparameters(optimizer: Optimizer, saved: list[dict], last_lrs: Sequence[Any]) -> None:
    """Put ``saved`` group settings back, then set each group's lr to the scheduler's last value."""
    for group, settings, lr in zip(optimizer.param_groups, saved, last_lrs):
        for key, value in {**settings, "lr": lr}.items():
            current = group.get(key)
            if isinstance(current, torch.Tensor) and isinstance(value, (torch.Tensor, float, int)):
                current.fill_(value)  # keep tensor identity (capturable / fused optimizers hold it)
            else:
                group[key] = value


_PLAIN_SCALARS = (type(None), bool, int, float, str)
_LEFT_OUT = object()


def to_plain(value: Any, path: str = "scheduler") -> Any:
    """Turn a scheduler state into tensors, numbers, strings, lists and string-keyed dicts.

    A ``Counter`` (MultiStepLR's milestones) becomes the sorted list of its elements, which
    :func:`like_template` turns back on loading; numpy values become Python numbers and lists. Anything
    else that ``torch.load(weights_only=True)`` could not read (e.g. an arbitrary object inside a
    callable ``lr_lambda``) is left out with a warning naming where it was.
    """
    if isinstance(value, Counter):
        return sorted(value.elements())
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Mapping):
        items = ((key, to_plain(item, f"{path}[{key!r}]")) for key, item in value.items())
        return {key: item for key, item in items if item is not _LEFT_OUT}
    if isinstance(value, (list, tuple)):
        items = (to_plain(item, f"{path}[{index}]") for index, item in enumerate(value))
        return [item for item in items if item is not _LEFT_OUT]
    if type(value) in _PLAIN_SCALARS or isinstance(value, torch.Tensor):
        return value
    warnings.warn(
        f"TorchScheduler: {path} holds a {type(value).__name__}, which torch.load(weights_only=True) cannot "
        "read; it is left out of the saved state (the rebuilt scheduler keeps its constructed value)",
        stacklevel=4,
    )
    return _LEFT_OUT


def like_template(template: Any, saved: Any) -> Any:
    """Give ``saved`` (from :func:`to_plain`) the container types of ``template`` (a fresh state)."""
    if isinstance(template, Counter) and isinstance(saved, list):
        return Counter(saved)
    if isinstance(template, Mapping) and isinstance(saved, Mapping):
        return {key: like_template(template.get(key), item) for key, item in saved.items()}
    if isinstance(template, (list, tuple)) and isinstance(saved, list) and len(template) == len(saved):
        items = [like_template(old, new) for old, new in zip(template, saved)]
        return tuple(items) if isinstance(template, tuple) else items
    return saved
