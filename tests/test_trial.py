"""End-to-end behaviour of Trial: training, history, hook order, evaluate and predict (replay, resume: own files)."""

import inspect
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Callback, Trial
from torchbearer.bases import HOOKS


class HookRecorder(Callback):
    def __init__(self):
        self.calls = []


for _hook in HOOKS:
    setattr(HookRecorder, _hook, lambda self, state, _name=_hook: self.calls.append(_name))


def test_training_reduces_the_loss(linear_trial):
    history = linear_trial.run(15)
    assert history[-1]["loss"] < history[0]["loss"] * 0.7
    assert history[-1]["val_acc"] > 0.8


def test_history_has_the_documented_keys_in_order(linear_trial):
    history = linear_trial.run(2)
    assert list(history[0]) == [
        "running_acc", "running_loss", "acc", "loss", "val_acc", "val_loss", "train_steps", "validation_steps",
    ]  # fmt: skip
    assert history[0]["train_steps"] == 4 and history[0]["validation_steps"] == 4
    assert all(isinstance(value, float) for key, value in history[0].items() if "steps" not in key)


def test_loss_metric_equals_mean_of_batch_losses(classification_data):
    x, y = classification_data
    model = nn.Linear(4, 3)
    batch_losses = []

    @torchbearer.callbacks.on_criterion
    def record(state):
        batch_losses.append(state[torchbearer.LOSS].item())

    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), ["loss"], [record])
    trial.with_train_data(x, y, batch_size=10, shuffle=False, num_workers=0)
    history = trial.run(1, verbose=0)
    assert history[0]["loss"] == pytest.approx(sum(batch_losses) / len(batch_losses), rel=1e-6)


def test_accuracy_metric_equals_hand_computation(classification_data):
    x, y = classification_data
    model = nn.Linear(4, 3)
    trial = Trial(model, None, nn.CrossEntropyLoss(), ["acc"], verbose=0)
    trial.with_val_data(x, y, batch_size=7, shuffle=False, num_workers=0)
    result = trial.evaluate()
    expected = (model(x).argmax(1) == y).float().mean().item()
    assert result["val_acc"] == pytest.approx(expected)


def test_run_is_a_target_epoch_not_an_increment(linear_trial):
    assert len(linear_trial.run(3)) == 3
    with pytest.warns(torchbearer.errors.TorchbearerWarning, match="already trained 3 epochs"):
        assert len(linear_trial.run(3)) == 3
    assert len(linear_trial.run(5)) == 5


def test_run_returns_the_same_growing_history_list(linear_trial):
    first = linear_trial.run(1)
    second = linear_trial.run(2)
    assert first is second and len(second) == 2


def test_hooks_fire_in_the_documented_order(classification_data):
    x, y = classification_data
    recorder = HookRecorder()
    model = nn.Linear(4, 3)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), ["loss"], [recorder])
    trial.with_train_data(x[:4], y[:4], batch_size=2, num_workers=0).with_val_data(x[:2], y[:2], batch_size=2,
                                                                                  num_workers=0)  # fmt: skip
    trial.run(1, verbose=0)
    train_batch = ["on_sample", "on_forward", "on_criterion", "on_backward", "on_step_training"]
    val_batch = ["on_sample_validation", "on_forward_validation", "on_criterion_validation", "on_step_validation"]
    assert recorder.calls == [
        "on_init", "on_start", "on_start_epoch", "on_start_training", *train_batch, *train_batch, "on_end_training",
        "on_start_validation", *val_batch, "on_end_validation", "on_end_epoch", "on_checkpoint", "on_end",
    ]  # fmt: skip


def test_history_is_appended_between_end_epoch_and_checkpoint(linear_trial):
    seen = {}

    class Peek(Callback):
        def on_end_epoch(self, state):
            seen["end_epoch"] = len(state[torchbearer.HISTORY])

        def on_checkpoint(self, state):
            seen["checkpoint"] = len(state[torchbearer.HISTORY])

    linear_trial.state[torchbearer.CALLBACK_LIST].append([Peek()])
    linear_trial.run(1)
    assert seen == {"end_epoch": 0, "checkpoint": 1}


def test_stop_training_during_training_drops_the_epoch(linear_trial):
    @torchbearer.callbacks.on_step_training
    def stop(state):
        if state[torchbearer.EPOCH] == 1:
            state[torchbearer.STOP_TRAINING] = True

    linear_trial.state[torchbearer.CALLBACK_LIST].append([stop])
    assert len(linear_trial.run(5)) == 1


def test_stop_training_at_end_epoch_keeps_the_epoch(linear_trial):
    @torchbearer.callbacks.on_end_epoch
    def stop(state):
        state[torchbearer.STOP_TRAINING] = True

    linear_trial.state[torchbearer.CALLBACK_LIST].append([stop])
    assert len(linear_trial.run(5)) == 1


def test_run_without_data_warns_once_and_fires_no_hooks():
    recorder = HookRecorder()
    trial = Trial(nn.Linear(1, 1), callbacks=[recorder], verbose=0)
    with pytest.warns(UserWarning, match="with_train_generator"):
        assert trial.run(2) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trial.run(2)
    assert recorder.calls == ["on_init"]


def test_differentiable_programming_without_data():
    target = torch.tensor([3.0, -2.0])

    class Parameters(nn.Module):
        def __init__(self):
            super().__init__()
            self.value = nn.Parameter(torch.zeros(2))

        def forward(self, _):
            return self.value

    model = Parameters()
    trial = Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        lambda state: ((state[torchbearer.Y_PRED] - target) ** 2).sum(),
    )
    trial.for_train_steps(200).run(1, verbose=0)
    assert torch.allclose(model.value.detach(), target, atol=1e-3)


def test_evaluate_prefixes_by_data_key_and_updates_history(linear_trial):
    x, y = linear_trial.state[torchbearer.TRAIN_GENERATOR].dataset.tensors
    linear_trial.with_test_generator(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), 10))
    linear_trial.run(1)
    assert set(linear_trial.evaluate()) == {"val_acc", "val_loss"}
    assert set(linear_trial.evaluate(data_key=torchbearer.TEST_DATA)) == {"test_acc", "test_loss"}
    assert set(linear_trial.evaluate(data_key=torchbearer.TRAIN_DATA)) == {"train_acc", "train_loss"}
    assert {"test_acc", "train_loss"} <= set(linear_trial.state[torchbearer.HISTORY][-1])
    assert not linear_trial.state[torchbearer.MODEL].training


def test_evaluate_and_predict_without_data_return_empty():
    trial = Trial(nn.Linear(1, 1), verbose=0)
    assert trial.evaluate() == {}
    assert trial.predict() == []


def test_predict_concatenates_outputs_in_order():
    model = nn.Linear(4, 2)
    x = torch.randn(25, 4)
    trial = Trial(model, verbose=0).with_test_data(x, batch_size=10, num_workers=0)
    predictions = trial.predict()
    assert torch.allclose(predictions, model(x).detach())


def test_predict_returns_list_for_tuple_outputs():
    class TwoHeads(nn.Module):
        def forward(self, x):
            return x, x * 2

    trial = Trial(TwoHeads(), verbose=0).with_test_data(torch.randn(4, 2), batch_size=2, num_workers=0)
    with pytest.warns(UserWarning, match="Failed to format predictions as tensor, returning as list."):
        predictions = trial.predict()
    assert isinstance(predictions, list) and len(predictions) == 2


def test_model_with_several_inputs_and_outputs():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(3, 1)

        def forward(self, left, right):
            return self.a(left), self.b(right)

    def criterion(out_a, out_b, target_a, target_b):
        return nn.functional.mse_loss(out_a, target_a) + nn.functional.mse_loss(out_b, target_b)

    dataset = [((torch.randn(2), torch.randn(3)), (torch.randn(1), torch.randn(1))) for _ in range(8)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    model = Pair()
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, ["loss"], verbose=0)
    history = trial.with_train_generator(loader).run(2)
    assert len(history) == 2 and "loss" in history[0]


def test_model_receives_state_when_it_declares_it():
    seen = []

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x, state):
            seen.append(state[torchbearer.BATCH])
            return self.linear(x)

    model = WithState()
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), verbose=0)
    trial.with_train_data(torch.randn(4, 2), torch.randn(4, 1), batch_size=2, num_workers=0).run(1)
    assert seen == [0, 1]


def test_criterion_of_state():
    model = nn.Linear(2, 1)

    def criterion(state):
        return state[torchbearer.Y_PRED].pow(2).mean()

    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, ["loss"], verbose=0)
    history = trial.with_train_data(torch.randn(8, 2), torch.zeros(8, 1), batch_size=4, num_workers=0).run(3)
    assert history[-1]["loss"] < history[0]["loss"]


def test_state_key_as_criterion():
    loss_key = torchbearer.state_key("my_loss")
    model = nn.Linear(2, 1)

    @torchbearer.callbacks.on_forward
    def store(state):
        state[loss_key] = state[torchbearer.Y_PRED].pow(2).mean()

    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_key, ["loss"], [store], verbose=0)
    history = trial.with_train_data(torch.randn(8, 2), torch.zeros(8, 1), batch_size=4, num_workers=0).run(2)
    assert history[1]["loss"] < history[0]["loss"]


def test_default_zero_loss_accepts_in_place_addition():
    model = nn.Linear(2, 1)

    @torchbearer.callbacks.on_criterion
    def add(state):
        state[torchbearer.LOSS] += state[torchbearer.Y_PRED].pow(2).mean()

    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), metrics=["loss"], callbacks=[add], verbose=0)
    history = trial.with_train_data(torch.randn(8, 2), torch.zeros(8, 1), batch_size=4, num_workers=0).run(3)
    assert history[-1]["loss"] < history[0]["loss"]


def test_model_none_warns_and_runs():
    trial = Trial(None, verbose=0).for_train_steps(2)
    with pytest.warns(UserWarning, match="The Model is None or not callable"):
        assert len(trial.run(1)) == 1


@pytest.mark.filterwarnings("ignore:Failed to format predictions")  # predict's None outputs
@pytest.mark.parametrize("call", ["run", "evaluate", "predict"])
def test_model_none_warning_points_at_the_callers_line(call):
    trial = Trial(None, verbose=0).for_steps(1, 1, 1)
    with pytest.warns(UserWarning, match="The Model is None or not callable") as caught:
        getattr(trial, call)()
    model_warnings = [warning for warning in caught if "The Model is None" in str(warning.message)]
    assert [warning.filename for warning in model_warnings] == [__file__]


def test_to_sets_device_and_dtype():
    trial = Trial(nn.Linear(2, 1)).to("cpu", torch.float64)
    assert trial.state[torchbearer.DEVICE] == "cpu" and trial.state[torchbearer.DATA_TYPE] is torch.float64
    assert trial.state[torchbearer.MODEL].weight.dtype is torch.float64


def test_str_lists_the_five_sections_spelled_right():
    text = str(Trial(nn.Linear(2, 1), None, nn.MSELoss(), ["loss"]))
    assert [line.strip("-").strip() for line in text.splitlines() if line.startswith("---")] == [
        "OPTIMIZER", "CRITERION", "METRICS", "CALLBACKS", "MODEL",
    ]  # fmt: skip


def test_repr_is_one_line_naming_the_parts_and_the_progress(linear_trial):
    linear_trial.run(2)
    assert repr(linear_trial) == (
        "Trial(model=Linear, optimizer=SGD, criterion=CrossEntropyLoss, metrics=2, callbacks=0, epochs=2, device='cpu')"
    )
    empty = Trial(None, callbacks=[torchbearer.callbacks.TerminateOnNaN()])
    assert repr(empty) == (
        "Trial(model=None, optimizer=None, criterion=None, metrics=0, callbacks=1, epochs=0, device='cpu')"
    )


def test_public_trial_methods_are_type_hinted():
    unhinted = []
    for name, method in inspect.getmembers(Trial, inspect.isfunction):
        if name.startswith("_") and name != "__init__":
            continue
        signature = inspect.signature(method)
        if signature.return_annotation is inspect.Signature.empty:
            unhinted.append(f"{name} -> ?")
        parameters = list(signature.parameters.values())[1:]  # after self
        unhinted += [f"{name}({p.name})" for p in parameters if p.annotation is inspect.Parameter.empty]
    assert unhinted == []


def test_the_package_ships_a_py_typed_marker():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(torchbearer.__file__).parent
    assert (root / "py.typed").is_file()
    pyproject = tomllib.loads((root.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["torchbearer"]


def test_callbacks_get_on_end_when_the_run_fails(linear_trial):
    ended = []

    class Fail(Callback):
        def on_step_training(self, state):
            raise RuntimeError("boom")

        def on_end(self, state):
            ended.append(True)

    linear_trial.state[torchbearer.CALLBACK_LIST].append([Fail()])
    with pytest.raises(RuntimeError, match="boom"):
        linear_trial.run(1)
    assert ended == [True]
