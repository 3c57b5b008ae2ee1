"""``AggregatePredictions``: collects the model's outputs over a pass (what ``Trial.predict`` returns)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from torchbearer.bases import Callback
from torchbearer.distributed import gather_predictions
from torchbearer.state import FINAL_PREDICTIONS, Y_PRED


class AggregatePredictions(Callback):
    """Gather ``Y_PRED`` after every validation-style step into ``FINAL_PREDICTIONS`` at the pass end.

    The per-batch outputs are concatenated along the first dimension (a single batch's tensor is
    kept as it is). Outputs that cannot be concatenated (tuples, dicts, ragged shapes) are stored
    as the list of per-batch outputs, with a warning. ``Trial.predict`` adds this callback itself.

    Example:
        >>> predictions = Trial(model).with_test_data(x, batch_size=32).predict()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.predictions_list: list[Any] = []

    def on_start_validation(self, state: dict) -> None:
        self.predictions_list = []

    def on_step_validation(self, state: dict) -> None:
        self.predictions_list.append(state[Y_PRED])

    def on_end_validation(self, state: dict) -> None:
        # In a distributed Trial every rank gets all ranks' predictions, in data set order.
        state[FINAL_PREDICTIONS] = gather_predictions(_aggregate(self.predictions_list), state)

    def on_end_epoch(self, state: dict) -> None:
        # A fresh list: FINAL_PREDICTIONS may hold the old one.
        self.predictions_list = []


def _aggregate(predictions: list[Any]) -> Any:
    if len(predictions) == 1 and isinstance(predictions[0], torch.Tensor):
        return predictions[0]
    if not predictions:
        return predictions
    try:
        return torch.cat(predictions, 0)
    except (TypeError, RuntimeError, ValueError):
        warnings.warn("Failed to format predictions as tensor, returning as list.", stacklevel=3)
        return predictions
