import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchbearer
from torchbearer.callbacks.mixup import Mixup, MixupAcc
from torchbearer.metrics import (
    BinaryAccuracy,
    CategoricalAccuracy,
    DefaultAccuracy,
    MeanSquaredError,
    Metric,
    MetricList,
    mean,
)
from torchbearer.metrics.default import __loss_map__

from .helpers import batch_state, run_pass


def resolved(criterion):
    metric = DefaultAccuracy()
    metric.reset({torchbearer.CRITERION: criterion})
    return metric


@pytest.mark.parametrize(
    ("criterion", "metric_class", "name"),
    [
        (nn.CrossEntropyLoss(), CategoricalAccuracy, "acc"),
        (nn.NLLLoss(), CategoricalAccuracy, "acc"),
        (F.cross_entropy, CategoricalAccuracy, "acc"),
        (F.nll_loss, CategoricalAccuracy, "acc"),
        (nn.MSELoss(), MeanSquaredError, "mse"),
        (F.mse_loss, MeanSquaredError, "mse"),
        (nn.BCELoss(), BinaryAccuracy, "binary_acc"),
        (nn.BCEWithLogitsLoss(), BinaryAccuracy, "binary_acc"),
        (F.binary_cross_entropy, BinaryAccuracy, "binary_acc"),
        (F.binary_cross_entropy_with_logits, BinaryAccuracy, "binary_acc"),
        (Mixup.mixup_loss, MixupAcc, "mixup_acc"),
        (lambda y_pred, y_true: y_pred.sum(), CategoricalAccuracy, "acc"),
        (None, CategoricalAccuracy, "acc"),
        (nn.L1Loss(), CategoricalAccuracy, "acc"),
    ],
    ids=lambda value: getattr(value, "__name__", type(value).__name__),
)
def test_acc_resolves_by_criterion(criterion, metric_class, name):
    metric = resolved(criterion)
    assert isinstance(metric.metric, metric_class)
    assert metric.name == name


def test_acc_is_categorical_before_the_first_reset():
    metric = DefaultAccuracy()
    assert metric.name == "acc" and isinstance(metric.metric, CategoricalAccuracy)


def test_acc_resolves_without_a_criterion_in_state():
    assert resolved_from({}).name == "acc"


def resolved_from(state):
    metric = DefaultAccuracy()
    metric.reset(state)
    return metric


def test_acc_and_accuracy_keys_build_default_accuracy():
    metrics = MetricList(["acc", "accuracy"])
    assert all(isinstance(metric, DefaultAccuracy) for metric in metrics.metric_list)


def test_acc_resolves_only_once():
    metric = resolved(nn.BCELoss())
    chosen = metric.metric
    metric.reset({torchbearer.CRITERION: nn.MSELoss()})
    assert metric.metric is chosen and metric.name == "binary_acc"


def test_acc_keeps_the_evaluation_mode_when_it_resolves():
    metric = DefaultAccuracy()
    metric.eval(data_key=torchbearer.TEST_DATA)
    state = batch_state(torch.tensor([[0.9], [0.1]]), torch.tensor([[1.0], [1.0]]))
    state[torchbearer.CRITERION] = nn.BCELoss()
    metric.reset(state)
    metric.process(state)
    assert list(metric.process_final(state)) == ["test_binary_acc"]


def test_acc_with_bce_reports_binary_accuracy_values():
    state = batch_state(torch.tensor([[0.9], [0.1], [0.7]]), torch.tensor([[1.0], [1.0], [0.0]]))
    state[torchbearer.CRITERION] = nn.BCELoss()
    per_batch, final = run_pass(MetricList(["acc"]), [state])
    assert per_batch == [{"running_binary_acc": pytest.approx(1 / 3)}]
    assert final["binary_acc"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "criterion", [nn.BCEWithLogitsLoss(), F.binary_cross_entropy_with_logits], ids=["class", "function"]
)
def test_acc_with_bce_on_logits_thresholds_the_logits_at_zero(criterion):
    logits = torch.tensor([[0.3], [-0.2], [1.5], [-2.0]])  # probabilities 0.57, 0.45, 0.82, 0.12
    state = batch_state(logits, torch.tensor([[1.0], [0.0], [1.0], [1.0]]))
    state[torchbearer.CRITERION] = criterion
    _, final = run_pass(MetricList(["acc"]), [state])
    assert final["binary_acc"] == pytest.approx(3 / 4)  # 0.3 counts as positive: its probability is above 0.5


def test_loss_map_accepts_extensions():
    @mean
    class Quarter(Metric):
        def __init__(self):
            super().__init__("quarter")

        def process(self, state):
            return torch.full((2,), 0.25)

    def quarter_loss(y_pred, y_true):
        return y_pred.sum()

    __loss_map__["quarter_loss"] = Quarter
    try:
        metric = resolved(quarter_loss)
        assert metric.name == "quarter"
        _, final = run_pass(metric, [batch_state()])
        assert final == {"quarter": 0.25}
    finally:
        del __loss_map__["quarter_loss"]
