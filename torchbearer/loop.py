"""The passes of a fitting loop: one short function each, every step of a batch in plain sight.

A training batch is :func:`training_step`; the closure it runs inside the optimizer step is, by
default, :func:`forward_backward` right below it (with ``Trial.with_compile``, when no callback hooks
in between forward and backward, :func:`torchbearer.compiling.compiled_forward_backward`: the same
steps as one compiled region). Metric values stay on the device while a pass
runs and are computed only when something reads them (see :mod:`torchbearer.metric_values`); they
become Python numbers once, at the end of the pass.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
import torch.optim.optimizer as optimizer_module

from torchbearer.calling import call_criterion, call_model
from torchbearer.distributed import stop_agreement
from torchbearer.metric_values import end_of_pass
from torchbearer.precision import autocast, backward, ends_accumulation, no_sync, starts_accumulation
from torchbearer.state import (
    BATCH,
    CALLBACK_LIST,
    CRITERION,
    DATA,
    GRAD_SCALER,
    LOSS,
    METRIC_LIST,
    METRICS,
    MODEL,
    OPTIMIZER,
    SAMPLER,
    STEPS,
    STOP_TRAINING,
    Y_PRED,
    Y_TRUE,
    X,
)


class ClosureKeys(NamedTuple):
    """The state keys a closure reads and writes (see :func:`torchbearer.bases.base_closure`)."""

    x: Any
    model: Any
    y_pred: Any
    y_true: Any
    criterion: Any
    loss: Any
    optimizer: Any


STANDARD_KEYS = ClosureKeys(X, MODEL, Y_PRED, Y_TRUE, CRITERION, LOSS, OPTIMIZER)


def training_step(state: dict, closure: Callable[[dict], Any]) -> None:
    """One training batch: load → ``on_sample`` → optimizer step over ``closure`` (by default
    :func:`forward_backward`: zero_grad → forward → ``on_forward`` → criterion → ``on_criterion`` →
    backward → ``on_backward``) → metrics → ``on_step_training``.

    Nothing here waits for the device: the metric values are computed when something reads them.
    """
    callbacks, optimizer, scaler = state[CALLBACK_LIST], state[OPTIMIZER], state.get(GRAD_SCALER)
    state[SAMPLER](state)  # the next batch into X and Y_TRUE
    callbacks.on_sample(state)
    if not ends_accumulation(state):  # gradient accumulation: add this batch's gradients, step later
        with no_sync(state[MODEL]):  # under DDP the gradients are all-reduced on the group's last batch only
            closure(state)
    elif scaler is not None:  # fp16: step unless the gradients overflowed, then adapt the loss scale
        closure(state)
        scaler.step(optimizer)
        scaler.update()
    elif runs_closure_once(optimizer):  # the same as optimizer.step(closure), without its indirection
        closure(state)
        optimizer.step()
    else:  # LBFGS and other optimizers that may evaluate the closure again
        optimizer.step(lambda: closure(state))
    state[METRICS] = state[METRIC_LIST].process(state.data)
    callbacks.on_step_training(state)


def forward_backward(state: dict, keys: ClosureKeys = STANDARD_KEYS) -> Any:
    """The standard closure: zero_grad → forward → ``on_forward`` → criterion → ``on_criterion`` →
    backward → ``on_backward``; returns the loss (so LBFGS can re-evaluate it).

    Mixed precision autocasts the forward pass and the criterion; with gradient accumulation the
    gradients are zeroed at the first batch of each group and each loss is divided over the group.
    """
    callbacks = state[CALLBACK_LIST]
    if starts_accumulation(state):
        state[keys.optimizer].zero_grad()
    with autocast(state):  # a no-op at full precision
        state[keys.y_pred] = call_model(state, state[keys.model], state[keys.x])
        callbacks.on_forward(state)
        state[keys.loss] = call_criterion(state, state[keys.criterion], keys.y_pred, keys.y_true)
        callbacks.on_criterion(state)
    backward(state, state[keys.loss])  # divided over an accumulation group, scaled for fp16
    callbacks.on_backward(state)
    return state[keys.loss]


def runs_closure_once(optimizer: Any) -> bool:
    """Whether ``optimizer.step(closure)`` is ``closure()`` then ``optimizer.step()``: true for PyTorch's own
    optimizers, except LBFGS (it evaluates the closure again) and unless a step pre-hook is registered (it
    would run after the backward instead of before it)."""
    return (
        _is_plain_torch_optimizer(type(optimizer))
        and "step" not in vars(optimizer)
        and not getattr(optimizer, "_optimizer_step_pre_hooks", None)
        and not optimizer_module._global_optimizer_pre_hooks
    )


@functools.cache
def _is_plain_torch_optimizer(optimizer_class: type) -> bool:
    return optimizer_class.__module__.startswith("torch.optim.") and optimizer_class is not torch.optim.LBFGS


def batch_indices(steps: int, first: int = 0) -> Iterable[int]:
    """Batch numbers for a pass from ``first``: up to ``steps``, or unbounded for ``-1``."""
    return itertools.count(first) if steps == -1 else range(first, max(steps, 0))


def set_training(model: Any, training: bool) -> None:
    """Put a module in training or evaluation mode; a model without modes (a plain function) is left alone."""
    switch = getattr(model, "train" if training else "eval", None)
    if callable(switch):
        switch()


def train_pass(state: dict, closure: Callable[[dict], Any], first_batch: int = 0) -> None:
    """One training pass of :func:`training_step`, between ``on_start_training`` and ``on_end_training``.

    A pass resumed at ``first_batch`` > 0 keeps the metric totals the Trial restored. Under torchrun
    every rank stops at the batch where the first one sets ``STOP_TRAINING``.
    """
    callbacks, metric_list = state[CALLBACK_LIST], state[METRIC_LIST]
    set_training(state[MODEL], True)
    if first_batch == 0:
        metric_list.train()
        metric_list.reset(state)
    state[METRICS] = {}
    callbacks.on_start_training(state)
    agree_to_stop = stop_agreement(state)  # under torchrun: every rank stops when one does; else None
    for batch in batch_indices(state[STEPS], first_batch):
        state[BATCH] = batch
        training_step(state, closure)
        if state[STOP_TRAINING] if agree_to_stop is None else agree_to_stop(state):
            break
    state[METRICS] = end_of_pass(state[METRICS], metric_list.process_final(state.data))
    callbacks.on_end_training(state)


def validation_pass(state: dict) -> None:
    """One evaluation pass without gradients: load → forward → criterion (if there are targets) →
    metrics, with the ``*_validation`` hooks between them."""
    callbacks, metric_list = state[CALLBACK_LIST], state[METRIC_LIST]
    set_training(state[MODEL], False)
    metric_list.eval(data_key=state[DATA])
    metric_list.reset(state)
    state[METRICS] = {}
    callbacks.on_start_validation(state)
    precision = autocast(state)  # decided once per pass; at full precision a no-op
    with torch.no_grad():
        for batch in batch_indices(state[STEPS]):
            state[BATCH] = batch
            state[SAMPLER](state)
            callbacks.on_sample_validation(state)
            with precision:
                state[Y_PRED] = call_model(state, state[MODEL], state[X])
                callbacks.on_forward_validation(state)
                if Y_TRUE in state:
                    state[LOSS] = call_criterion(state, state[CRITERION], Y_PRED, Y_TRUE)
                    callbacks.on_criterion_validation(state)
            if Y_TRUE in state:
                state[METRICS] = metric_list.process(state.data)
            callbacks.on_step_validation(state)
            if state[STOP_TRAINING]:
                break
        if Y_TRUE in state:
            state[METRICS] = end_of_pass(state[METRICS], metric_list.process_final(state.data))
    callbacks.on_end_validation(state)
