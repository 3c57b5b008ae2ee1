"""Moving batches to the trial's device and dtype, and finding the bare model inside wrappers."""

from __future__ import annotations

from typing import Any

import torch

from torchbearer.state import DATA_TYPE, DEVICE

_CPU = frozenset(("cpu", torch.device("cpu")))  # the ways of naming the CPU that skip Tensor.to


def deep_to(batch: Any, device: Any, dtype: torch.dtype) -> Any:
    """Move every tensor in a (nested) batch to ``device``; floating tensors are also cast to ``dtype``.

    Lists and tuples are rebuilt with the same type, dicts are updated in place, anything that is
    not a tensor is returned unchanged. Copies are ``non_blocking``: from pinned memory they overlap
    with compute, otherwise they behave as ordinary copies. A tensor already on the CPU, with the
    right dtype, is returned as it is without calling ``Tensor.to``, which would return it too at
    several times the cost (this runs twice per batch).
    """
    if isinstance(batch, torch.Tensor):
        if batch.dtype is dtype or not batch.is_floating_point():
            if device in _CPU and batch.is_cpu:
                return batch
            return batch.to(device, non_blocking=True)
        return batch.to(device, dtype, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        moved = [deep_to(item, device, dtype) for item in batch]
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
            return type(batch)(*moved)
        return type(batch)(moved)
    if isinstance(batch, dict):
        for key in batch:
            batch[key] = deep_to(batch[key], device, dtype)
        return batch
    return batch


def update_device_and_dtype(state: dict, *args: Any, **kwargs: Any) -> dict:
    """Record the device and dtype given to ``Trial.to`` in ``state``; returns ``state``.

    A ``torch.dtype`` (positional or ``dtype=``) sets ``DATA_TYPE``; anything else
    (positional or ``device=``) sets ``DEVICE``.
    """
    for arg in args:
        if isinstance(arg, torch.dtype):
            state[DATA_TYPE] = arg
        else:
            state[DEVICE] = arg
    if "dtype" in kwargs:
        state[DATA_TYPE] = kwargs["dtype"]
    if "device" in kwargs:
        state[DEVICE] = kwargs["device"]
    return state


def unwrap_model(model: Any) -> Any:
    """The user's module inside ``torch.compile`` and (Distributed)DataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model, torch.nn.Module):
            model = model._orig_mod
        elif isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model
