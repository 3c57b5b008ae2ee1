import math

import pytest
import torch

import torchbearer
from torchbearer.metrics import (
    BinaryAccuracy,
    CategoricalAccuracy,
    Epoch,
    Loss,
    MeanSquaredError,
    MetricList,
    TopKCategoricalAccuracy,
)

from .helpers import batch_state, run_pass, split

SIZES = [5, 2, 9]


def batches(y_pred, y_true, sizes=SIZES, **extra):
    return [batch_state(p, t, **extra) for p, t in zip(split(y_pred, sizes), split(y_true, sizes))]


def test_categorical_accuracy_over_uneven_batches_is_accuracy_over_all_samples():
    y_pred, y_true = torch.randn(16, 4), torch.randint(0, 4, (16,))
    _, final = run_pass(CategoricalAccuracy(), batches(y_pred, y_true))
    expected = (y_pred.argmax(1) == y_true).float().mean().item()
    assert final["acc"] == pytest.approx(expected)


def test_categorical_accuracy_names_in_training_and_evaluation():
    y_pred, y_true = torch.randn(16, 4), torch.randint(0, 4, (16,))
    metric = CategoricalAccuracy()
    per_batch, final = run_pass(metric, batches(y_pred, y_true))
    assert [list(values) for values in per_batch] == [["running_acc"]] * 3
    assert list(final) == ["acc", "running_acc"]
    for data_key, prefix in [(torchbearer.VALIDATION_DATA, "val"), (torchbearer.TEST_DATA, "test"),
                             (torchbearer.TRAIN_DATA, "train")]:  # fmt: skip
        per_batch, final = run_pass(metric, batches(y_pred, y_true), data_key=data_key, training=False)
        assert per_batch == [{}] * 3 and list(final) == [f"{prefix}_acc"]


def test_categorical_accuracy_reduces_one_hot_targets():
    y_pred = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    one_hot = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    _, final = run_pass(CategoricalAccuracy(), [batch_state(y_pred, one_hot)])
    assert final["acc"] == pytest.approx(2 / 3)


def test_categorical_accuracy_drops_ignored_samples():
    y_pred = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y_true = torch.tensor([0, -100, 1, -100])
    per_batch, final = run_pass(CategoricalAccuracy(), batches(y_pred, y_true, sizes=[2, 2]))
    assert final["acc"] == pytest.approx(0.5)
    assert per_batch[0]["running_acc"] == pytest.approx(1.0)


def test_custom_ignore_index_on_segmentation_shaped_targets():
    y_pred = torch.zeros(1, 3, 2, 2)
    y_pred[0, 2] = 1.0  # always predicts class 2
    y_true = torch.tensor([[[2, 255], [0, 2]]])
    _, final = run_pass(CategoricalAccuracy(ignore_index=255), [batch_state(y_pred, y_true)])
    assert final["acc"] == pytest.approx(2 / 3)


def test_categorical_accuracy_reads_custom_keys():
    scores, labels = torchbearer.state_key("scores_probe"), torchbearer.state_key("labels_probe")
    state = {scores: torch.tensor([[0.0, 1.0]]), labels: torch.tensor([1])}
    _, final = run_pass(CategoricalAccuracy(pred_key=scores, target_key=labels), [state])
    assert final["acc"] == 1.0


def test_top_k_accuracy_counts_targets_among_the_k_best_and_drops_ignored():
    y_pred = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    y_true = torch.tensor([1, 0, -100])
    metric = TopKCategoricalAccuracy(k=2)
    _, final = run_pass(metric, [batch_state(y_pred, y_true)])
    assert metric.name == "top_2_acc"
    assert final["top_2_acc"] == pytest.approx(0.5)


def test_top_k_registry_keys_build_k_5_and_10():
    assert str(MetricList(["top_5_acc", "top_5_accuracy", "top_10_acc", "top_10_accuracy"])) == str(
        ["top_5_acc", "top_5_acc", "top_10_acc", "top_10_acc"]
    )


def test_top_k_with_too_few_classes_explains_the_problem():
    with pytest.raises(ValueError, match="top_5_acc needs at least 5 classes"):
        run_pass(TopKCategoricalAccuracy(), [batch_state(torch.randn(2, 3), torch.tensor([0, 1]))])


def test_binary_accuracy_is_element_wise_over_thresholded_values():
    y_pred = torch.tensor([[0.9], [0.2], [0.6], [0.4]])
    y_true = torch.tensor([1.0, 0.0, 0.0, 1.0])
    _, final = run_pass(BinaryAccuracy(), [batch_state(y_pred, y_true)])
    assert final["binary_acc"] == pytest.approx(0.5)
    _, final = run_pass(BinaryAccuracy(threshold=0.3), [batch_state(y_pred, y_true)])
    assert final["binary_acc"] == pytest.approx(0.75)


def test_binary_accuracy_with_mismatched_sizes_names_both_shapes():
    with pytest.raises(ValueError, match=r"y_pred has shape \(2, 2\) and y_true has shape \(3,\)"):
        run_pass(BinaryAccuracy(), [batch_state(torch.rand(2, 2), torch.ones(3))])


def test_mean_squared_error_over_uneven_batches_matches_all_elements():
    y_pred, y_true = torch.randn(16, 2), torch.randn(16, 2)
    _, final = run_pass(MeanSquaredError(), batches(y_pred, y_true))
    assert final["mse"] == pytest.approx(torch.nn.functional.mse_loss(y_pred, y_true).item(), rel=1e-5)


def test_mean_squared_error_reshapes_flat_targets():
    _, final = run_pass(MeanSquaredError(), [batch_state(torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 0.0]))])
    assert final["mse"] == pytest.approx(2.5)


def test_loss_reports_running_mean_and_pass_mean():
    states = [batch_state(loss=torch.tensor(value)) for value in (1.0, 2.0, 6.0)]
    per_batch, final = run_pass(Loss(), states)
    assert per_batch == [{"running_loss": 1.0}] * 3
    assert final == {"loss": 3.0, "running_loss": 1.0}


def test_nan_loss_shows_up_as_nan():
    states = [batch_state(loss=torch.tensor(value)) for value in (1.0, float("nan"))]
    _, final = run_pass(MetricList(["loss"]), states)
    assert math.isnan(final["loss"])


def test_epoch_reports_the_epoch_in_every_mode():
    state = batch_state(epoch=3)
    per_batch, final = run_pass(Epoch(), [state])
    assert per_batch == [{"epoch": 3}] and final == {"epoch": 3}
    _, final = run_pass(Epoch(), [state], data_key=torchbearer.TEST_DATA, training=False)
    assert final == {"test_epoch": 3}
    assert isinstance(final["test_epoch"], int)


@pytest.mark.parametrize(
    ("key", "name"),
    [("cat_acc", "acc"), ("cat_accuracy", "acc"), ("binary_acc", "binary_acc"), ("binary_accuracy", "binary_acc"),
     ("mse", "mse"), ("loss", "loss"), ("epoch", "epoch")],
)  # fmt: skip
def test_registry_keys_build_the_documented_metric(key, name):
    assert str(MetricList([key])) == str([name])


@pytest.mark.parametrize("make", [CategoricalAccuracy, lambda: TopKCategoricalAccuracy(k=2)], ids=["acc", "top_2_acc"])
def test_a_column_of_class_indices_is_read_as_class_indices_not_one_hot(make):
    y_pred, y_true = torch.randn(16, 4), torch.randint(0, 4, (16,))
    _, as_indices = run_pass(make(), batches(y_pred, y_true))
    _, as_column = run_pass(make(), batches(y_pred, y_true.unsqueeze(1)))
    assert as_column == as_indices


@pytest.mark.parametrize("metric", [CategoricalAccuracy(), TopKCategoricalAccuracy(k=1)], ids=["acc", "top_1_acc"])
def test_class_accuracy_of_a_single_output_column_is_refused(metric):
    with pytest.raises(ValueError, match="one column"):
        metric.process(batch_state(torch.rand(6, 1), (torch.rand(6, 1) > 0.5).float()))


def test_binary_accuracy_of_logits_compares_with_the_logit_of_the_threshold():
    logits = torch.tensor([0.3, -0.2, 1.5, -2.0, 0.9])
    y_true = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    _, final = run_pass(BinaryAccuracy(logits=True), [batch_state(logits, y_true)])
    assert final["binary_acc"] == pytest.approx(3 / 5)
    _, strict = run_pass(BinaryAccuracy(threshold=0.7, logits=True), [batch_state(logits, y_true)])
    assert strict["binary_acc"] == pytest.approx(2 / 5)  # logit(0.7) = 0.85: only 1.5 and 0.9 count as positive
    with pytest.raises(ValueError, match="between 0 and 1"):
        BinaryAccuracy(threshold=1.0, logits=True)
