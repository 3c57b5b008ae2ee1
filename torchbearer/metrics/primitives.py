"""The built-in per-sample metrics and their default keys.

Each root metric returns one value per sample (or element) as a device tensor; the decorators
add a running mean over training batches and the mean over the pass. Accuracies with an
``ignore_index`` return a :class:`~torchbearer.metrics.masked.Masked`, so ignored samples drop out
without boolean indexing (which would wait for the device).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.metrics.decorators import default_for_key, mean, running_mean, to_dict
from torchbearer.metrics.masked import Masked
from torchbearer.state import EPOCH, LOSS, Y_PRED, Y_TRUE


def _class_indices(owner: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Targets as class indices. Targets with as many dims as the predictions are a column of indices
    (one entry on dim 1) or one-hot / soft targets (argmaxed on dim 1).

    Raises:
        ValueError: the predictions have one column, so the highest score is always class 0.
    """
    if y_pred.dim() > 1 and y_pred.shape[1] == 1:
        raise ValueError(
            f"{owner} takes the highest of the class scores on dim 1, but y_pred has one column (shape "
            f"{tuple(y_pred.shape)}), so every sample would count as class 0. For one output per sample use "
            "'binary_acc' (BinaryAccuracy; BinaryAccuracy(logits=True) for logits)"
        )
    if y_true.dim() != y_pred.dim():
        return y_true
    return y_true.squeeze(1) if y_true.shape[1] == 1 else y_true.argmax(1)


def _same_size(owner: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """``y_true`` reshaped to ``y_pred``'s shape, with an error naming both shapes when it cannot be."""
    if y_true.numel() != y_pred.numel():
        raise ValueError(
            f"{owner} compares predictions and targets element by element, but y_pred has shape "
            f"{tuple(y_pred.shape)} and y_true has shape {tuple(y_true.shape)}; give targets with as many elements"
        )
    return y_true.reshape(y_pred.shape)


@default_for_key("cat_accuracy")
@default_for_key("cat_acc")
@running_mean
@mean
class CategoricalAccuracy(Metric):
    """Per-sample accuracy of class predictions: ``argmax(y_pred, 1) == y_true``.

    Reported as ``running_acc``, ``acc`` and ``val_acc``. Samples whose target is ``ignore_index``
    count nowhere.

    Args:
        pred_key: State key of the predictions (scores on dim 1).
        target_key: State key of the targets (class indices, also as a column, or one-hot / soft targets).
        ignore_index: A target value that marks samples to leave out.

    Raises:
        ValueError: the predictions have one column (use :class:`BinaryAccuracy`).
    """

    def __init__(self, pred_key: Any = Y_PRED, target_key: Any = Y_TRUE, ignore_index: int = -100) -> None:
        super().__init__("acc")
        self.pred_key = pred_key
        self.target_key = target_key
        self.ignore_index = ignore_index

    def process(self, *args: Any) -> Masked:
        state = args[0]
        y_pred = state[self.pred_key]
        y_true = _class_indices(type(self).__name__, y_pred, state[self.target_key])
        correct = y_pred.argmax(1) == y_true  # booleans: the aggregators sum them as floats
        return Masked(correct, y_true != self.ignore_index)


@default_for_key("binary_accuracy")
@default_for_key("binary_acc")
@running_mean
@mean
class BinaryAccuracy(Metric):
    """Element-wise accuracy of binary predictions: ``(y_pred > threshold) == (y_true > threshold)``.

    Reported as ``running_binary_acc``, ``binary_acc`` and ``val_binary_acc``. With ``logits=True``
    the predictions are logits, compared with the logit of ``threshold`` (0 for 0.5): ``'acc'`` with
    ``BCEWithLogitsLoss`` uses this.

    Args:
        pred_key: State key of the predictions (probabilities, or logits with ``logits=True``).
        target_key: State key of the targets (as many elements as the predictions).
        threshold: Probabilities above it are the positive class.
        logits: The predictions are logits (before the sigmoid).
    """

    def __init__(
        self, pred_key: Any = Y_PRED, target_key: Any = Y_TRUE, threshold: float = 0.5, *, logits: bool = False
    ) -> None:
        super().__init__("binary_acc")
        self.pred_key = pred_key
        self.target_key = target_key
        self.threshold = threshold
        self.logits = logits
        if logits and not 0 < threshold < 1:
            raise ValueError(f"BinaryAccuracy(logits=True) needs a threshold between 0 and 1, got {threshold}")
        self._pred_threshold = math.log(threshold / (1 - threshold)) if logits else threshold

    def process(self, *args: Any) -> torch.Tensor:
        state = args[0]
        y_pred = state[self.pred_key]
        y_true = _same_size(type(self).__name__, y_pred, state[self.target_key])
        return ((y_pred > self._pred_threshold) == (y_true > self.threshold)).float().reshape(-1)


@default_for_key("top_10_accuracy", k=10)
@default_for_key("top_10_acc", k=10)
@default_for_key("top_5_accuracy", k=5)
@default_for_key("top_5_acc", k=5)
@running_mean
@mean
class TopKCategoricalAccuracy(Metric):
    """Per-sample top-k accuracy: whether the target is among the ``k`` highest scores on dim 1.

    Reported as ``running_top_<k>_acc``, ``top_<k>_acc`` and ``val_top_<k>_acc``. Samples whose
    target is ``ignore_index`` count nowhere.

    Args:
        pred_key: State key of the predictions (scores on dim 1).
        target_key: State key of the targets (class indices, or one-hot / soft targets).
        k: How many of the highest scores may contain the target.
        ignore_index: A target value that marks samples to leave out.
    """

    def __init__(self, pred_key: Any = Y_PRED, target_key: Any = Y_TRUE, k: int = 5, ignore_index: int = -100) -> None:
        super().__init__(f"top_{k}_acc")
        self.pred_key = pred_key
        self.target_key = target_key
        self.k = k
        self.ignore_index = ignore_index

    def process(self, *args: Any) -> Masked:
        state = args[0]
        y_pred = state[self.pred_key]
        if y_pred.shape[1] < self.k:
            raise ValueError(
                f"top_{self.k}_acc needs at least {self.k} classes on dim 1, but y_pred has shape "
                f"{tuple(y_pred.shape)}; use a smaller k, e.g. TopKCategoricalAccuracy(k={y_pred.shape[1]})"
            )
        y_true = _class_indices(type(self).__name__, y_pred, state[self.target_key])
        top_k = y_pred.topk(self.k, dim=1).indices
        correct = (top_k == y_true.unsqueeze(1)).any(1)
        return Masked(correct, y_true != self.ignore_index)


@default_for_key("mse")
@running_mean
@mean
class MeanSquaredError(Metric):
    """Element-wise squared error ``(y_pred - y_true)²``, reported as ``running_mse``, ``mse`` and ``val_mse``.

    Args:
        pred_key: State key of the predictions.
        target_key: State key of the targets (as many elements as the predictions).
    """

    def __init__(self, pred_key: Any = Y_PRED, target_key: Any = Y_TRUE) -> None:
        super().__init__("mse")
        self.pred_key = pred_key
        self.target_key = target_key

    def process(self, *args: Any) -> torch.Tensor:
        state = args[0]
        y_pred = state[self.pred_key]
        y_true = _same_size(type(self).__name__, y_pred, state[self.target_key])
        return (y_pred - y_true) ** 2


@default_for_key("loss")
@running_mean
@mean
class Loss(Metric):
    """The batch loss ``state[LOSS]``, reported as ``running_loss``, ``loss`` and ``val_loss``.

    A NaN loss shows up as NaN: nothing skips it.
    """

    def __init__(self) -> None:
        super().__init__("loss")

    def process(self, *args: Any) -> Any:
        return args[0][LOSS]


@default_for_key("epoch")
@to_dict
class Epoch(Metric):
    """The epoch number ``state[EPOCH]``, reported as ``epoch`` (``val_epoch`` etc. in evaluation)."""

    def __init__(self) -> None:
        super().__init__("epoch")

    def process(self, *args: Any) -> int:
        return args[0][EPOCH]

    def process_final(self, *args: Any) -> int:
        return args[0][EPOCH]
