"""The built-in per-sample metrics and their default keys.

Each root metric returns one value per sample (or element) as a device tensor; the decorators
add a running mean over training batches and the mean over the pass. Accuracies with an
``ignore_index`` return a :class:`~torchbearer.metrics.masked.Masked`, so ignored samples drop out
without boolean indexing (which would wait for the device).
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.errors import MetricError
from torchbearer.metrics.decorators import default_for_key, mean, running_mean, to_dict
from torchbearer.metrics.masked import Batches, Masked, Unequal, _shape, stack_batches
from torchbearer.state import EPOCH, LOSS, Y_PRED, Y_TRUE

_HELD_ELEMENTS = 1 << 16
"""The largest prediction (in elements) a metric holds to compute with later batches' (see ``batch_inputs``)."""


def _class_indices(y_pred: torch.Tensor, y_true: torch.Tensor, class_dim: int = 1) -> torch.Tensor:
    """Targets as class indices: one-hot or soft targets (as many dims as the predictions) are argmaxed on the
    class dim (1, or 2 for batches stacked on a new dim 0)."""
    return y_true.argmax(class_dim) if y_true.dim() == y_pred.dim() else y_true


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
        target_key: State key of the targets (class indices, or one-hot / soft targets).
        ignore_index: A target value that marks samples to leave out.
    """

    def __init__(self, pred_key: Any = Y_PRED, target_key: Any = Y_TRUE, ignore_index: int = -100) -> None:
        super().__init__("acc")
        self.pred_key = pred_key
        self.target_key = target_key
        self.ignore_index = ignore_index

    def process(self, *args: Any) -> Masked:
        state = args[0]
        return self._correct(state[self.pred_key], state[self.target_key])

    def _correct(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> Masked:
        y_true = _class_indices(y_pred, y_true)
        correct = y_pred.argmax(1) == y_true  # booleans: the aggregators sum them as floats
        return Masked(correct, Unequal(y_true, self.ignore_index))

    def batch_inputs(self, *args: Any) -> Any:
        """What :meth:`process` reads, held for :meth:`process_batches`: the predictions and targets, with
        their version counters to notice a later in-place change. A prediction too large to hold a few
        batches (or a value that is not a tensor) is processed now instead."""
        state = args[0]
        y_pred, y_true = state[self.pred_key], state[self.target_key]
        if type(y_pred) is not torch.Tensor or type(y_true) is not torch.Tensor or y_pred.numel() > _HELD_ELEMENTS:
            return self.process(*args)
        return y_pred, y_true, y_pred._version, y_true._version

    def process_batches(self, inputs: list) -> Batches | list:
        """:meth:`process` for several batches' :meth:`batch_inputs` at once: one ``argmax`` and one comparison
        for each run of same-shaped batches, joined into one :class:`Batches` (a smaller batch is padded
        with entries that do not count); one value per batch when the samples' shapes differ.

        Raises:
            MetricError: a held prediction or target was changed in place after its batch.
        """
        held = inputs if set(map(type, inputs)) == {tuple} else [item for item in inputs if type(item) is tuple]
        if not held:
            return inputs
        y_preds, y_trues, pred_versions, true_versions = zip(*held)  # columns: no Python loop per batch
        _check_unchanged(y_preds, pred_versions, "prediction")
        _check_unchanged(y_trues, true_versions, "target")
        runs = None if held is not inputs else _same_shape_runs(y_preds, y_trues)
        if runs is None:
            return [self._correct(item[0], item[1]) if type(item) is tuple else item for item in inputs]
        parts = [self._correct_stacked(y_preds[start:end], y_trues[start:end]) for start, end in runs]
        return Batches(*parts[0]) if len(parts) == 1 else _padded_batches(parts)

    def _correct_stacked(self, y_preds: tuple, y_trues: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """Correctness (as float32, zero where ignored) and the counted entries of same-shaped batches."""
        y_pred = torch.stack(y_preds)
        y_true = _class_indices(y_pred, torch.stack(y_trues), class_dim=2)
        keep = y_true != self.ignore_index
        correct = (y_pred.argmax(2) == y_true) & keep
        return correct.to(torch.float32), keep


def _same_shape_runs(y_preds: tuple, y_trues: tuple) -> list[tuple[int, int]] | None:
    """``(start, end)`` of each run of consecutive batches with equal shapes; ``None`` when the batches'
    samples differ in shape (only the batch size may change, as for a smaller last batch)."""
    pred_shapes, true_shapes = list(map(_shape, y_preds)), list(map(_shape, y_trues))
    if len(set(pred_shapes)) == 1 and len(set(true_shapes)) == 1:
        return [(0, len(pred_shapes))]
    if len({shape[1:] for shape in pred_shapes}) > 1 or len({shape[1:] for shape in true_shapes}) > 1:
        return None
    shapes = list(zip(pred_shapes, true_shapes))
    starts = [0] + [index for index in range(1, len(shapes)) if shapes[index] != shapes[index - 1]]
    return list(zip(starts, starts[1:] + [len(shapes)]))


def _padded_batches(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> Batches:
    """Runs of (values, keep) whose batch sizes differ, joined on dim 0; the smaller batches are padded
    with zero values that ``keep`` leaves out, which changes no sum, count or batch mean."""
    width = max(values.shape[1] for values, _ in parts)
    rows = sum(values.shape[0] for values, _ in parts)
    first_values, first_keep = parts[0]
    values = first_values.new_zeros((rows, width, *first_values.shape[2:]))
    keep = first_keep.new_zeros((rows, width, *first_keep.shape[2:]))
    start = 0
    for run_values, run_keep in parts:
        end, size = start + run_values.shape[0], run_values.shape[1]
        values[start:end, :size] = run_values
        keep[start:end, :size] = run_keep
        start = end
    return Batches(values, keep)


_version = operator.attrgetter("_version")


def _check_unchanged(tensors: tuple, versions: tuple, role: str) -> None:
    """Raise if a held prediction or target was changed in place since :meth:`batch_inputs` took it."""
    if tuple(map(_version, tensors)) == versions:
        return
    changed = next(tensor for tensor, version in zip(tensors, versions) if tensor._version != version)
    raise MetricError(
        f"the {role} tensor of an earlier batch (shape {tuple(changed.shape)}) was changed in place after that "
        "batch, before its accuracy was computed: metrics compute a few batches together. Give every batch new "
        "tensors (a loader that refills one buffer must return a copy), and change the prediction or target only "
        "before on_step_training / on_step_validation"
    )


@default_for_key("binary_accuracy")
@default_for_key("binary_acc")
@running_mean
@mean
class BinaryAccuracy(Metric):
    """Element-wise accuracy of binary predictions: ``(y_pred > threshold) == (y_true > threshold)``.

    Reported as ``running_binary_acc``, ``binary_acc`` and ``val_binary_acc``.

    Args:
        pred_key: State key of the predictions (probabilities).
        target_key: State key of the targets (as many elements as the predictions).
        threshold: Values above it are the positive class.
    """

    def __init__(self, pred_key: Any = Y_PRED, target_key: Any = Y_TRUE, threshold: float = 0.5) -> None:
        super().__init__("binary_acc")
        self.pred_key = pred_key
        self.target_key = target_key
        self.threshold = threshold

    def process(self, *args: Any) -> torch.Tensor:
        state = args[0]
        y_pred = state[self.pred_key]
        y_true = _same_size(type(self).__name__, y_pred, state[self.target_key])
        return ((y_pred > self.threshold) == (y_true > self.threshold)).float().reshape(-1)


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
        y_true = _class_indices(y_pred, state[self.target_key])
        top_k = y_pred.topk(self.k, dim=1).indices
        correct = (top_k == y_true.unsqueeze(1)).any(1).float()
        return Masked(correct, Unequal(y_true, self.ignore_index))


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

    batch_inputs = process  # the loss itself is all a group needs

    def process_batches(self, inputs: list) -> Batches | list:
        """The losses of several batches stacked (one device operation), or as they are if they do not stack."""
        stacked = stack_batches(inputs)
        return inputs if stacked is None else stacked


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
