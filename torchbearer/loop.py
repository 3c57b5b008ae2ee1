"""The passes of a fitting loop: one short function each, every step of a batch in plain sight.

Metric values stay on the device while a pass runs (``LazyMetrics``) and are moved to the host
once, at the end of the pass (``to_python``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch

from torchbearer.calling import call_criterion, call_model, criterion_takes_state, model_takes_state
from torchbearer.distributed import stop_agreement
from torchbearer.loading import load_batch_standard
from torchbearer.metric_values import LazyMetrics, end_of_pass
from torchbearer.precision import autocast, training_step
from torchbearer.state import (
    BATCH,
    BATCH_METRICS_UNREAD,
    CALLBACK_LIST,
    CRITERION,
    DATA,
    LOSS,
    METRIC_LIST,
    METRICS,
    MODEL,
    SAMPLER,
    STEPS,
    STOP_TRAINING,
    Y_PRED,
    Y_TRUE,
    X,
)


def batch_indices(steps: int, first: int = 0) -> Iterable[int]:
    """Batch numbers for a pass from ``first``: up to ``steps``, or unbounded for ``-1``."""
    return itertools.count(first) if steps == -1 else range(first, max(steps, 0))


TRAINING_BATCH_HOOKS = ("on_sample", "on_forward", "on_criterion", "on_backward", "on_step_training")
VALIDATION_BATCH_HOOKS = (
    "on_sample_validation", "on_forward_validation", "on_criterion_validation", "on_step_validation"
)  # fmt: skip


def batch_metrics_unread(state: dict, hooks: Iterable[str], calls_read_no_state: bool) -> bool:
    """Whether nothing can read this pass's per-batch metric values before the pass ends.

    True when no callback with one of the pass's batch ``hooks`` may read them (see
    ``Callback.reads_batch_metrics``), the batch loader is the standard one and
    ``calls_read_no_state`` (the model, criterion and closure are called without the state). Metric
    trees then compute the values less often (see ``MetricTree``); what they report at the end of
    the pass is the same.
    """
    callbacks = state[CALLBACK_LIST]
    read = not hasattr(callbacks, "may_read_batch_metrics") or callbacks.may_read_batch_metrics(hooks)
    return calls_read_no_state and not read and state[SAMPLER] is load_batch_standard


def _tensors_only(state: dict) -> bool:
    """Whether the model and the criterion are known to be called on tensors, not on the state."""
    return model_takes_state(state[MODEL]) is False and criterion_takes_state(state[CRITERION]) is False


def _standard_closure(state: dict, closure: Callable[[dict], object]) -> bool:
    """Whether ``closure`` is a standard one (``base_closure``) over a model and criterion that take no state."""
    plain_for = getattr(closure, "plain_for", None)
    return plain_for is not None and plain_for(state) is not None


def train_pass(state: dict, closure: Callable[[dict], object], first_batch: int = 0) -> None:
    """One training pass: for each batch, load → ``on_sample`` → optimizer step over the closure
    (zero_grad → forward → criterion → backward) → metrics → ``on_step_training``.

    Nothing here waits for the device: metric values stay tensors until the end of the pass. A pass
    resumed at ``first_batch`` > 0 keeps the metric totals the Trial restored.
    """
    callbacks, metric_list = state[CALLBACK_LIST], state[METRIC_LIST]
    detached = state.data  # a live read-only view: built once, it sees every batch's values
    state[MODEL].train()
    if first_batch == 0:
        metric_list.train()
        metric_list.reset(state)
    state[METRICS] = LazyMetrics()
    callbacks.on_start_training(state)
    state[BATCH_METRICS_UNREAD] = batch_metrics_unread(state, TRAINING_BATCH_HOOKS, _standard_closure(state, closure))
    step, closure = training_step(state, closure)  # decided once per pass, e.g. a plain fp32 closure
    agree_to_stop = stop_agreement(state)  # under torchrun: every rank stops when one does; else None
    for batch in batch_indices(state[STEPS], first_batch):
        state[BATCH] = batch
        state[SAMPLER](state)
        callbacks.on_sample(state)
        step(state, closure)  # zero_grad → forward → criterion → backward, then the optimizer step
        state[METRICS] = LazyMetrics(metric_list.process(detached))
        callbacks.on_step_training(state)
        stop = state[STOP_TRAINING] if agree_to_stop is None else agree_to_stop(state)
        if stop:
            break
    final = metric_list.process_final(detached)
    state[METRICS] = end_of_pass(state[METRICS], final)
    callbacks.on_end_training(state)


def validation_pass(state: dict) -> None:
    """One evaluation pass without gradients: load → forward → criterion (if there are targets) →
    metrics, with the ``*_validation`` hooks between them."""
    callbacks, metric_list = state[CALLBACK_LIST], state[METRIC_LIST]
    detached = state.data
    state[MODEL].eval()
    metric_list.eval(data_key=state[DATA])
    metric_list.reset(state)
    state[METRICS] = LazyMetrics()
    callbacks.on_start_validation(state)
    state[BATCH_METRICS_UNREAD] = batch_metrics_unread(state, VALIDATION_BATCH_HOOKS, _tensors_only(state))
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
                    state[LOSS] = call_criterion(state, state[CRITERION], state[Y_PRED], state[Y_TRUE])
                    callbacks.on_criterion_validation(state)
            if Y_TRUE in state:
                state[METRICS] = LazyMetrics(metric_list.process(detached))
            callbacks.on_step_validation(state)
            if state[STOP_TRAINING]:
                break
        if Y_TRUE in state:
            final = metric_list.process_final(detached)
            state[METRICS] = end_of_pass(state[METRICS], final)
    callbacks.on_end_validation(state)
