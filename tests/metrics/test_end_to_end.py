"""Metric names and values as a user sees them through a Trial (spec metrics.md §6, paper listing 2)."""

import math

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Metric, Trial, metrics


def make_trial(model, criterion, metric_names, classes=3, validation=True, target=None):
    x = torch.randn(32, 4)
    y = torch.randint(0, classes, (32,)) if target is None else target
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, metrics=metric_names, verbose=0)
    trial.with_train_data(x, y, batch_size=8, num_workers=0)
    if validation:
        trial.with_val_data(x, y, batch_size=8, num_workers=0)
    return trial


def test_history_keys_for_acc_loss_epoch_lr_with_validation():
    history = make_trial(nn.Linear(4, 3), nn.CrossEntropyLoss(), ["acc", "loss", "epoch", "lr"]).run(2)
    assert list(history[0]) == ["running_acc", "running_loss", "epoch", "lr", "acc", "loss", "val_epoch", "val_acc",
                                "val_loss", "train_steps", "validation_steps"]  # fmt: skip
    assert (history[0]["epoch"], history[1]["epoch"], history[1]["val_epoch"]) == (0, 1, 1)
    assert history[0]["lr"] == 0.1 and history[0]["train_steps"] == history[0]["validation_steps"] == 4
    assert all(type(value) in (int, float) for record in history for value in record.values())


def test_epoch_accuracy_is_accuracy_over_all_training_samples():
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    model = nn.Linear(4, 3)
    trial = Trial(model, None, nn.CrossEntropyLoss(), metrics=["acc"], verbose=0)  # no optimizer: weights fixed
    trial.with_train_data(x, y, batch_size=7, shuffle=False, num_workers=0)
    history = trial.run(1)
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).float().mean().item()
    assert history[0]["acc"] == pytest.approx(expected)


def test_evaluate_prefixes_by_data_key_and_merges_into_history():
    trial = make_trial(nn.Linear(4, 3), nn.CrossEntropyLoss(), ["acc", "loss", "epoch"])
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    trial.with_test_generator(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4))
    trial.run(1)
    assert list(trial.evaluate()) == ["val_epoch", "val_acc", "val_loss"]
    assert list(trial.evaluate(data_key=torchbearer.TEST_DATA)) == ["test_epoch", "test_acc", "test_loss"]
    assert list(trial.evaluate(data_key=torchbearer.TRAIN_DATA)) == ["train_epoch", "train_acc", "train_loss"]
    assert {"val_acc", "test_acc", "train_acc"} <= set(trial.state[torchbearer.HISTORY][-1])
    assert trial.state[torchbearer.HISTORY][-1]["test_epoch"] == 0


def test_mse_loss_turns_acc_into_mse():
    history = make_trial(nn.Linear(4, 1), nn.MSELoss(), ["acc", "loss"], validation=False,
                         target=torch.randn(32, 1)).run(1)  # fmt: skip
    assert list(history[0]) == ["running_mse", "running_loss", "mse", "loss", "train_steps", "validation_steps"]
    assert history[0]["validation_steps"] is None
    assert history[0]["mse"] == pytest.approx(history[0]["loss"], rel=1e-5)


def test_bce_loss_merges_acc_and_binary_acc():
    model = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())
    history = make_trial(model, nn.BCELoss(), ["acc", "binary_acc", "mse"], validation=False,
                         target=torch.randint(0, 2, (32, 1)).float()).run(1)  # fmt: skip
    assert list(history[0]) == ["running_binary_acc", "running_mse", "binary_acc", "mse",
                                "train_steps", "validation_steps"]  # fmt: skip


def test_categorical_accuracy_of_one_output_per_sample_is_refused_naming_binary_acc():
    model = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())
    trial = make_trial(model, nn.BCELoss(), ["cat_acc"], validation=False, target=torch.randint(0, 2, (32, 1)).float())
    with pytest.raises(torchbearer.errors.MetricError, match="one column.*'binary_acc'"):
        trial.run(1)  # argmax over one column is always class 0: every sample would count as correct


def test_per_batch_metrics_hold_only_per_batch_producers():
    seen = {"train": [], "validation": []}

    class Record(torchbearer.Callback):
        def on_step_training(self, state):
            seen["train"].append(list(state[torchbearer.METRICS]))

        def on_step_validation(self, state):
            seen["validation"].append(list(state[torchbearer.METRICS]))

    trial = make_trial(nn.Linear(4, 3), nn.CrossEntropyLoss(), ["acc", "loss"])
    trial.state[torchbearer.CALLBACK_LIST].append([Record()])
    trial.run(1)
    assert seen["train"] == [["running_acc", "running_loss"]] * 4
    assert seen["validation"] == [[]] * 4


def test_paper_listing_2_replaces_acc_and_reports_std_only(restore_registry):
    @metrics.default_for_key("acc")
    @metrics.running_mean
    @metrics.std
    class CategoricalAccuracy(Metric):
        def __init__(self):
            super().__init__("acc")

        def process(self, state):
            y_pred, y_true = state[torchbearer.Y_PRED], state[torchbearer.Y_TRUE]
            return (y_pred.argmax(dim=1) == y_true).float()

    history = make_trial(nn.Linear(4, 3), nn.CrossEntropyLoss(), ["acc", "loss"]).run(1)
    assert list(history[0]) == ["running_acc", "running_loss", "acc_std", "loss", "val_acc_std", "val_loss",
                                "train_steps", "validation_steps"]  # fmt: skip


def test_nan_loss_reaches_the_history_as_nan():
    class NanLoss(nn.Module):
        def forward(self, y_pred, y_true):
            return nn.functional.cross_entropy(y_pred, y_true) * float("nan")

    history = make_trial(nn.Linear(4, 3), NanLoss(), ["loss"], validation=False).run(1)
    assert math.isnan(history[0]["loss"]) and math.isnan(history[0]["running_loss"])


def test_running_mean_window_spans_epochs_in_a_trial():
    values = iter(range(1, 100))
    key = torchbearer.state_key("counter_probe")

    class Count(torchbearer.Callback):
        def on_forward(self, state):
            state[key] = torch.tensor(float(next(values)))

    trial = make_trial(nn.Linear(4, 3), nn.CrossEntropyLoss(), [metrics.running_mean(key, step_size=100)])
    trial.state[torchbearer.CALLBACK_LIST].append([Count()])
    history = trial.run(2)
    # 4 batches per epoch; each epoch's value is computed on its first batch only (step 100)
    assert history[0]["running_counter_probe"] == 1.0
    assert history[1]["running_counter_probe"] == pytest.approx(sum(range(1, 6)) / 5)


def _evaluation(batch_size, shuffle, seed=0):
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(359, 4, generator=generator), torch.randint(0, 3, (359,), generator=generator)
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)
    trial = Trial(model, None, nn.CrossEntropyLoss(), metrics=["loss", "acc"], verbose=0).with_val_generator(loader)
    with torch.no_grad():
        per_sample = nn.functional.cross_entropy(model(x), y, reduction="none").mean().item()
    return trial, per_sample


def test_the_epoch_loss_weighs_every_sample_once_whatever_the_order_of_the_batches():
    trial, per_sample = _evaluation(batch_size=256, shuffle=True)
    first, second = trial.evaluate()["val_loss"], trial.evaluate()["val_loss"]
    assert first == pytest.approx(second, abs=1e-6)
    assert first == pytest.approx(per_sample, abs=1e-6)


def test_the_epoch_loss_does_not_depend_on_the_batch_size():
    small, per_sample = _evaluation(batch_size=7, shuffle=False)
    large, _ = _evaluation(batch_size=64, shuffle=False)
    assert small.evaluate()["val_loss"] == pytest.approx(large.evaluate()["val_loss"], abs=1e-6)
    assert large.evaluate()["val_loss"] == pytest.approx(per_sample, abs=1e-6)


def test_a_mean_decorated_metric_of_one_number_per_batch_weighs_each_sample_once():
    @metrics.mean
    @metrics.lambda_metric("mean_target")
    def mean_target(y_pred, y_true):
        return y_true.float().mean()

    y = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    trial = Trial(nn.Linear(4, 3), None, nn.CrossEntropyLoss(), metrics=[mean_target], verbose=0)
    trial.with_val_data(torch.randn(7, 4), y, batch_size=3, shuffle=False)
    assert trial.evaluate()["val_mean_target"] == pytest.approx(y.float().mean().item())
