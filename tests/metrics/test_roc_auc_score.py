import sys

import pytest
import torch

from torchbearer.metrics import MetricList, RocAucScore

from .helpers import batch_state, run_pass, split

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def one_hot(labels, classes):
    return torch.nn.functional.one_hot(labels, classes).numpy()


def test_roc_auc_over_the_pass_matches_sklearn_on_one_hot_labels():
    y_pred, y_true = torch.rand(30, 3), torch.arange(30) % 3
    states = [batch_state(p, t) for p, t in zip(split(y_pred, [10, 20]), split(y_true, [10, 20]))]
    per_batch, final = run_pass(RocAucScore(one_hot_classes=3), states)
    expected = sklearn_metrics.roc_auc_score(one_hot(y_true, 3), y_pred.numpy())
    first = sklearn_metrics.roc_auc_score(one_hot(y_true[:10], 3), y_pred[:10].numpy())
    assert per_batch == [{"roc_auc_score": pytest.approx(first)}] * 2
    assert final == {"roc_auc_score": pytest.approx(expected)}


def test_roc_auc_offset_shifts_labels_before_one_hot():
    y_pred, y_true = torch.rand(12, 2), torch.arange(12) % 2
    _, final = run_pass(RocAucScore(one_hot_offset=1, one_hot_classes=2), [batch_state(y_pred, y_true + 1)])
    assert final["roc_auc_score"] == pytest.approx(sklearn_metrics.roc_auc_score(one_hot(y_true, 2), y_pred.numpy()))


def test_roc_auc_without_one_hot_scores_binary_targets():
    y_pred, y_true = torch.rand(12), torch.arange(12) % 2
    _, final = run_pass(RocAucScore(one_hot_labels=False), [batch_state(y_pred, y_true)], training=False)
    assert final == {"val_roc_auc_score": pytest.approx(sklearn_metrics.roc_auc_score(y_true, y_pred))}


def test_roc_auc_keys_report_as_roc_auc_score():
    assert str(MetricList(["roc_auc", "roc_auc_score"])) == "['roc_auc_score', 'roc_auc_score']"


def test_roc_auc_without_sklearn_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    with pytest.raises(ImportError, match=r"pip install torchbearer\[sklearn\]"):
        RocAucScore()


@pytest.mark.parametrize("shape", ["(N, 1)", "(N,)"])
def test_roc_auc_of_one_score_per_sample_scores_the_binary_targets_as_they_are(shape):
    y_pred = torch.randn(40, 1)  # logits, as for BCEWithLogitsLoss
    y_true = (y_pred + 0.8 * torch.randn(40, 1) > 0).float()
    if shape == "(N,)":
        y_pred, y_true = y_pred[:, 0], y_true[:, 0]
    _, final = run_pass(RocAucScore(), [batch_state(y_pred, y_true)])  # the default one-hot encoding is skipped
    expected = sklearn_metrics.roc_auc_score(y_true.reshape(-1).numpy(), y_pred.reshape(-1).numpy())
    assert final == {"roc_auc_score": pytest.approx(expected)}


def test_roc_auc_with_more_classes_than_one_hot_columns_names_the_argument_to_set():
    with pytest.raises(ValueError, match=r"RocAucScore\(one_hot_classes=3\)"):
        run_pass(RocAucScore(), [batch_state(torch.rand(12, 3), torch.arange(12) % 3)])
