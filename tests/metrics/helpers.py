"""Drive metrics the way the Trial does, with plain-dict states."""

from __future__ import annotations

from typing import Any

import torch

import torchbearer
from torchbearer.metric_values import to_python


def batch_state(y_pred: Any = None, y_true: Any = None, loss: Any = None, **extra: Any) -> dict:
    """A plain-dict state for one batch (``extra`` keys are StateKey names, e.g. ``epoch=1``)."""
    state = {torchbearer.Y_PRED: y_pred, torchbearer.Y_TRUE: y_true, torchbearer.BATCH: 0, torchbearer.EPOCH: 0}
    if loss is not None:
        state[torchbearer.LOSS] = loss
    state.update(extra)
    return state


def python(output: Any) -> Any:
    """A metric output (a dict or a raw value) with tensors turned into Python numbers, as the Trial does."""
    if isinstance(output, dict):
        return to_python(output)
    return to_python({"value": output})["value"]


def run_pass(metric: Any, states: list[dict], data_key: Any = None, training: bool = True) -> tuple[list, dict]:
    """Reset, process every state (numbering the batches) and finish: ``(per-batch dicts, final dict)``.

    Outputs are converted with :func:`python`.
    """
    if training:
        metric.train()
    else:
        metric.eval(data_key=data_key)
    metric.reset(states[0] if states else {})
    per_batch = []
    with torch.no_grad():
        for index, state in enumerate(states):
            per_batch.append(python(metric.process({**state, torchbearer.BATCH: index})))
        final = python(metric.process_final(states[-1] if states else {}))
    return per_batch, final


def split(tensor: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """``tensor`` cut along dim 0 into batches of the given (uneven) sizes."""
    return list(torch.split(tensor, sizes))
