"""TerminateOnNaN: stops on a non-finite monitored value, stays quiet where the metric cannot exist."""

import math
import warnings

import pytest
import torch

import torchbearer
from torchbearer.callbacks.decorators import on_step_training
from torchbearer.callbacks.terminate_on_nan import TerminateOnNaN


def _state(**metrics):
    return {torchbearer.METRICS: dict(metrics), torchbearer.STOP_TRAINING: False}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, torch.tensor(math.nan)])
def test_non_finite_running_loss_stops_training_and_says_so(value, capsys):
    state = _state(running_loss=value)
    TerminateOnNaN().on_step_training(state)
    assert state[torchbearer.STOP_TRAINING] is True
    assert "Invalid running_loss, terminating" in capsys.readouterr().out


def test_finite_running_loss_does_not_stop():
    state = _state(running_loss=0.3)
    TerminateOnNaN().on_step_training(state)
    assert state[torchbearer.STOP_TRAINING] is False


def test_nan_epoch_validation_loss_stops(capsys):
    callback = TerminateOnNaN()
    state = _state(running_loss=0.3, loss=0.3, val_loss=math.nan)
    callback.on_start_epoch(state)
    callback.on_end_epoch(state)
    assert state[torchbearer.STOP_TRAINING] is True
    assert "Invalid val_loss, terminating" in capsys.readouterr().out


def test_validation_steps_without_the_running_metric_do_not_warn():
    callback = TerminateOnNaN()
    state = _state(running_loss=0.3)
    callback.on_start_epoch(state)
    callback.on_start_training(state)
    callback.on_step_training(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            callback.on_step_validation(_state())
        callback.on_end_epoch(_state(running_loss=0.3, loss=0.3, val_loss=0.4))


def test_a_training_epoch_without_any_watched_metric_warns_once_at_its_end():
    callback = TerminateOnNaN()
    callback.on_start_epoch(_state())
    callback.on_start_training(_state())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            callback.on_step_training(_state(acc=0.5))
        callback.on_end_epoch(_state(acc=0.5))
    assert [str(w.message)[:48] for w in caught] == ["TerminateOnNaN: Failed to retrieve key `running_"]


def test_custom_monitor_is_checked_with_its_epoch_forms(capsys):
    callback = TerminateOnNaN(monitor="acc")
    state = _state(acc=0.5, val_acc=math.inf)
    callback.on_end_epoch(state)
    assert state[torchbearer.STOP_TRAINING] is True
    assert "Invalid val_acc, terminating" in capsys.readouterr().out


def _nan_after(calls):
    """A criterion that returns NaN from its ``calls``-th call on."""
    seen = []

    def criterion(y_pred, y_true):
        seen.append(None)
        loss = torch.nn.functional.cross_entropy(y_pred, y_true)
        return loss * math.nan if len(seen) > calls else loss

    return criterion


def _run_with_nan_after(calls, x, y):
    """Train 5 epochs of 4 batches with a loss that turns NaN after ``calls`` batches; return history and steps."""
    model = torch.nn.Linear(4, 3)
    steps = []
    counter = on_step_training(lambda state: steps.append((state[torchbearer.EPOCH], state[torchbearer.BATCH])))
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.01), _nan_after(calls), metrics=["loss"],
        callbacks=[TerminateOnNaN(), counter], verbose=0,
    )  # fmt: skip
    trial.with_train_data(x, y, batch_size=10, num_workers=0)
    return trial.run(5), steps


def test_trial_stops_on_the_nan_batch_and_that_epoch_is_not_in_history(classification_data, capsys):
    history, steps = _run_with_nan_after(4, *classification_data)  # the first batch of epoch 1 is NaN
    assert len(history) == 1
    assert steps[-1] == (1, 0)  # that batch was the last one run
    assert "Invalid running_loss, terminating" in capsys.readouterr().out


def test_nan_hidden_between_running_loss_updates_stops_at_the_end_of_its_epoch(classification_data, capsys):
    # The running loss is recomputed every 10 batches, so a NaN on batch 1 of epoch 1 first shows in
    # the epoch's mean loss: the run stops after that epoch.
    history, steps = _run_with_nan_after(5, *classification_data)
    assert len(history) == 2 and math.isnan(history[1]["loss"])
    assert steps[-1] == (1, 3)
    assert "Invalid loss, terminating" in capsys.readouterr().out
