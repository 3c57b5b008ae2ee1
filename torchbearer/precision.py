"""Mixed precision and gradient accumulation: the pieces the training step in :mod:`torchbearer.loop` uses.

``Trial.with_precision('bf16' | 'fp16')`` puts an autocast dtype (and for fp16 a ``GradScaler``)
in the state; ``Trial.with_accumulation(n)`` sets how many batches add their gradients before the
optimizer steps. At full precision without accumulation every helper here is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from torchbearer.calling import describe
from torchbearer.errors import BackwardError
from torchbearer.state import (
    ACCUMULATION_STEPS,
    AUTOCAST_DTYPE,
    BACKWARD_ARGS,
    BATCH,
    DEVICE,
    GRAD_SCALER,
    OPTIMIZER,
    STEPS,
    Y_PRED,
    Y_TRUE,
)

PRECISIONS = {"fp32": None, "32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for a precision name.

    Raises:
        ValueError: the name is not one of ``fp32``, ``bf16``, ``fp16``.
    """
    try:
        return PRECISIONS[str(precision).lower()]
    except KeyError:
        raise ValueError(f"precision {precision!r} is unknown; use one of 'fp32', 'bf16', 'fp16'") from None


def device_type(device: Any) -> str:
    """``'cuda'``, ``'cpu'``, ... for a device given as a string, index or ``torch.device``."""
    return torch.device(device).type


_FULL_PRECISION = contextlib.nullcontext()  # reusable: entering it does nothing


def autocast(state: Mapping) -> contextlib.AbstractContextManager:
    """Autocast for the forward pass and criterion, or a no-op at full precision."""
    dtype = state.get(AUTOCAST_DTYPE)
    if dtype is None:
        return _FULL_PRECISION
    return torch.autocast(device_type(state[DEVICE]), dtype=dtype)


def starts_accumulation(state: Mapping) -> bool:
    """True on the first batch of an accumulation group: the time to zero the gradients."""
    group = state.get(ACCUMULATION_STEPS) or 1
    return group == 1 or state.get(BATCH, 0) % group == 0


def ends_accumulation(state: Mapping) -> bool:
    """True when this batch ends an accumulation group (or the pass): the optimizer steps after it."""
    group = state.get(ACCUMULATION_STEPS) or 1
    if group == 1:
        return True
    batch, steps = state.get(BATCH, 0), state.get(STEPS, -1)
    return batch % group == group - 1 or (steps != -1 and batch == steps - 1)


def backward(state: Mapping, loss: torch.Tensor) -> None:
    """``loss.backward(**state[BACKWARD_ARGS])``, divided over the accumulation group and scaled for fp16.

    Raises:
        BackwardError: autograd raised a plain ``RuntimeError`` (e.g. a target dtype the loss cannot
            differentiate); the message adds the prediction and target. Specific errors such as
            ``torch.cuda.OutOfMemoryError`` pass through unchanged.
    """
    group = state.get(ACCUMULATION_STEPS) or 1
    if group > 1:
        loss = loss / group
    scaler = state.get(GRAD_SCALER)
    if scaler is not None:
        loss = scaler.scale(loss)
    try:
        loss.backward(**state.get(BACKWARD_ARGS, {}))
    except RuntimeError as error:
        if type(error) is not RuntimeError:  # out-of-memory and other specific errors keep their own type
            raise
        raise _backward_error(state, error) from error


def _backward_error(state: Mapping, error: RuntimeError) -> BackwardError:
    """Autograd's error with the prediction and target described; some torch versions reject a target only here."""
    hint = ""
    if "dtype" in str(error):
        hint = (
            " A dtype mismatch here usually comes from the target: convert it in the data or the criterion "
            "(y.float() for a regression loss, y.long() for class indices)"
        )
    return BackwardError(
        f"back-propagating the loss failed: {str(error).rstrip('.')}. The prediction was "
        f"({describe(state.get(Y_PRED))}) and the target ({describe(state.get(Y_TRUE))}).{hint}"
    )


def unscale_gradients(state: Mapping) -> None:
    """Bring fp16-scaled gradients back to their true size (call before clipping them)."""
    scaler = state.get(GRAD_SCALER)
    if scaler is None:
        return
    try:
        scaler.unscale_(state[OPTIMIZER])
    except RuntimeError as error:  # a second clipping callback in the same step: already unscaled
        if "already been called" not in str(error):
            raise


def no_sync(model: Any) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` (skip the gradient all-reduce) for a model that has it, else a no-op."""
    no_sync_context = getattr(model, "no_sync", None)
    return no_sync_context() if no_sync_context is not None else contextlib.nullcontext()
