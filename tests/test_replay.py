"""``Trial.replay`` (``torchbearer.replay``): callbacks driven from the stored history, model and data untouched."""

import torch

import torchbearer
from torchbearer import Callback
from torchbearer.bases import HOOKS
from torchbearer.callbacks import CSVLogger


class HookRecorder(Callback):
    def __init__(self):
        self.calls = []
        self.step_metrics = []
        self.epoch_metrics = []

    def on_step_training(self, state):
        self.calls.append("on_step_training")
        self.step_metrics.append(dict(state[torchbearer.METRICS]))

    def on_end_epoch(self, state):
        self.calls.append("on_end_epoch")
        self.epoch_metrics.append(dict(state[torchbearer.METRICS]))


for _hook in HOOKS:
    if _hook not in ("on_step_training", "on_end_epoch"):
        setattr(HookRecorder, _hook, lambda self, state, _name=_hook: self.calls.append(_name))


def test_replay_drives_callbacks_from_history(linear_trial):
    linear_trial.run(2)
    recorder = HookRecorder()
    callbacks = [recorder]
    linear_trial.replay(callbacks, verbose=0, one_batch=True)
    assert callbacks == [recorder]
    assert recorder.calls.count("on_step_training") == 2 and recorder.calls.count("on_step_validation") == 2
    assert "on_checkpoint" not in recorder.calls


def test_replay_calls_the_batch_hooks_once_per_recorded_step_with_the_epoch_s_values(linear_trial):
    history = linear_trial.run(2)
    recorder = HookRecorder()
    linear_trial.replay([recorder], verbose=0)
    assert recorder.calls.count("on_step_training") == 2 * 4 and recorder.calls.count("on_step_validation") == 2 * 4
    metrics = [{key: value for key, value in record.items() if "steps" not in key} for record in history]
    assert recorder.step_metrics[0] == {key: value for key, value in metrics[0].items() if "val_" not in key}
    assert recorder.epoch_metrics == metrics
    assert recorder.calls[:3] == ["on_start", "on_start_epoch", "on_start_training"]
    assert recorder.calls[-1] == "on_end"


def test_a_replayed_csv_log_equals_the_run_s_log(linear_trial, tmp_path):
    linear_trial.state[torchbearer.CALLBACK_LIST].append([CSVLogger(str(tmp_path / "run.csv"))])
    linear_trial.run(3)
    linear_trial.replay(callbacks=[CSVLogger(str(tmp_path / "replay.csv"))], verbose=0)
    assert (tmp_path / "replay.csv").read_text() == (tmp_path / "run.csv").read_text()


def test_replay_leaves_model_history_and_callbacks_as_they_were(linear_trial):
    history = linear_trial.run(1)
    recorded = [dict(record) for record in history]
    weight = linear_trial.state[torchbearer.MODEL].weight.clone()
    callbacks = linear_trial.state[torchbearer.CALLBACK_LIST]
    assert linear_trial.replay([HookRecorder()], verbose=0) is linear_trial
    assert history == recorded and torch.equal(linear_trial.state[torchbearer.MODEL].weight, weight)
    assert linear_trial.state[torchbearer.CALLBACK_LIST] is callbacks


def test_a_callback_stopping_training_ends_the_replayed_pass_and_skips_validation(linear_trial):
    linear_trial.run(1)

    class StopAfterOne(HookRecorder):
        def on_step_training(self, state):
            super().on_step_training(state)
            state[torchbearer.STOP_TRAINING] = True

    recorder = StopAfterOne()
    linear_trial.replay([recorder], verbose=0)
    assert recorder.calls.count("on_step_training") == 1 and "on_start_validation" not in recorder.calls
