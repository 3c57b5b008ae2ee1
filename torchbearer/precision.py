"""Mixed precision and gradient accumulation: how a training step runs backward and steps the optimizer.

``Trial.with_precision('bf16' | 'fp16')`` puts an autocast dtype (and for fp16 a ``GradScaler``)
in the state; ``Trial.with_accumulation(n)`` sets how many batches add their gradients before the
optimizer steps. The closure and the loop ask this module, so a plain fp32 step stays exactly
``optimizer.step(closure)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.optim.optimizer as _optimizer_module

from torchbearer.calling import describe
from torchbearer.errors import BackwardError
from torchbearer.state import (
    ACCUMULATION_STEPS,
    AUTOCAST_DTYPE,
    BACKWARD_ARGS,
    BATCH,
    DEVICE,
    GRAD_SCALER,
    MODEL,
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


def autocast(state: dict) -> contextlib.AbstractContextManager:
    """Autocast for the forward pass and criterion, or a no-op at full precision."""
    dtype = state.get(AUTOCAST_DTYPE)
    if dtype is None:
        return _FULL_PRECISION
    return torch.autocast(device_type(state[DEVICE]), dtype=dtype)


def _micro_batch(state: dict) -> tuple[int, int]:
    """(position of this batch in its accumulation group, size of the group)."""
    group = state.get(ACCUMULATION_STEPS) or 1
    return state.get(BATCH, 0) % group, group


def starts_accumulation(state: dict) -> bool:
    """True on the first batch of an accumulation group: the time to zero the gradients."""
    group = state.get(ACCUMULATION_STEPS) or 1
    return group == 1 or state.get(BATCH, 0) % group == 0


def steps_optimizer(state: dict) -> bool:
    """True when this batch ends an accumulation group (or the pass): the optimizer steps after it."""
    position, group = _micro_batch(state)
    steps = state.get(STEPS, -1)
    return position == group - 1 or (steps != -1 and state.get(BATCH, 0) == steps - 1)


def backward(state: dict, loss: torch.Tensor) -> None:
    """``loss.backward()``, divided over the accumulation group and scaled for fp16.

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
    plain_backward(state, loss, **state[BACKWARD_ARGS])


def plain_backward(state: dict, loss: torch.Tensor, **backward_args: Any) -> None:
    """``loss.backward(**backward_args)``, with :func:`backward`'s error for a plain ``RuntimeError``."""
    try:
        loss.backward(**backward_args)
    except RuntimeError as error:
        if type(error) is not RuntimeError:  # out-of-memory and other specific errors keep their own type
            raise
        raise _backward_error(state, error) from error


def _backward_error(state: dict, error: RuntimeError) -> BackwardError:
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


def unscale_gradients(state: dict) -> None:
    """Bring fp16-scaled gradients back to their true size (call before clipping them)."""
    scaler = state.get(GRAD_SCALER)
    if scaler is None:
        return
    try:
        scaler.unscale_(state[OPTIMIZER])
    except RuntimeError as error:  # a second clipping callback in the same step: already unscaled
        if "already been called" not in str(error):
            raise


def _no_sync(model: Any) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` (skip the gradient all-reduce) for a model that has it."""
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if no_sync is not None else contextlib.nullcontext()


def _closure_is_optional(optimizer: Any) -> bool:
    """Whether ``optimizer.step(closure)`` is the same as ``closure()`` then ``optimizer.step()``.

    True for PyTorch's own optimizers, which call the closure once before their update, except LBFGS
    (it re-evaluates the closure) and unless a step pre-hook is registered (it would run before the
    backward in one order and after it in the other). Subclasses and other optimizers keep the closure.
    """
    optimizer_class = type(optimizer)
    return (
        optimizer_class.__module__.startswith("torch.optim.")
        and optimizer_class is not torch.optim.LBFGS
        and "step" not in vars(optimizer)
        and not getattr(optimizer, "_optimizer_step_pre_hooks", None)
        and not getattr(_optimizer_module, "_global_optimizer_pre_hooks", None)
    )


def _closure_then_step(state: dict, closure: Callable[[dict], Any]) -> None:
    closure(state)
    state[OPTIMIZER].step()


Closure = Callable[[dict], Any]


def is_plain(state: dict) -> bool:
    """True for a pass at full precision with no gradient accumulation, grad scaler or backward arguments."""
    return (
        state.get(AUTOCAST_DTYPE) is None
        and state.get(GRAD_SCALER) is None
        and (state.get(ACCUMULATION_STEPS) or 1) == 1
        and not state.get(BACKWARD_ARGS)
    )


def training_step(state: dict, closure: Closure) -> tuple[Callable[[dict, Closure], None], Closure]:
    """How this pass runs the closure and steps the optimizer, decided once per pass: ``(step, closure)``.

    Without a grad scaler or accumulation, with one of PyTorch's optimizers, the step calls the
    closure and then ``optimizer.step()``, saving the closure's indirection; if the pass is also plain
    (:func:`is_plain`), a closure that offers a ``plain_for(state)`` variant (the standard one does) is
    swapped for it, which skips the per-batch checks this module and :mod:`torchbearer.calling` would
    otherwise repeat. Everything else goes through :func:`optimizer_step` with the closure as given.
    """
    unscaled_single_steps = state.get(GRAD_SCALER) is None and (state.get(ACCUMULATION_STEPS) or 1) == 1
    if not (unscaled_single_steps and torch.is_grad_enabled() and _closure_is_optional(state[OPTIMIZER])):
        return optimizer_step, closure
    plain_for = getattr(closure, "plain_for", None) if is_plain(state) else None
    plain_closure = plain_for(state) if plain_for is not None else None
    return _closure_then_step, plain_closure or closure


def optimizer_step(state: dict, closure: Callable[[dict], Any]) -> None:
    """Run the closure and step the optimizer, honouring fp16 scaling and gradient accumulation."""
    optimizer, scaler = state[OPTIMIZER], state.get(GRAD_SCALER)
    if scaler is None and (state.get(ACCUMULATION_STEPS) or 1) == 1:
        optimizer.step(lambda: closure(state))
        return
    if not steps_optimizer(state):
        with _no_sync(state[MODEL]):
            closure(state)
        return
    if scaler is None:
        optimizer.step(lambda: closure(state))
        return
    closure(state)
    scaler.step(optimizer)  # skips the step when the fp16 gradients hold inf or NaN
    scaler.update()
