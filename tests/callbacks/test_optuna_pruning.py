"""OptunaPruning and optuna_objective in real Optuna studies: a seeded MedianPruner search, and two workers
sharing one study through a SQLite storage URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import pytest
import torch
from torch import nn

from torchbearer import Trial
from torchbearer.callbacks import Callback, CSVLogger, OptunaPruning, optuna_objective

optuna = pytest.importorskip("optuna")
WORKER = Path(__file__).with_name("optuna_study_worker.py")
EPOCHS = 4


class EndRecorder(Callback):
    """Remembers whether the run reached ``on_end`` and which error (if any) was on its way out then."""

    def __init__(self) -> None:
        self.ended_with: list = []

    def on_end(self, state: dict) -> None:
        self.ended_with.append(type(sys.exc_info()[1]).__name__)


def small_trial(lr: float, callbacks=()) -> Trial:
    torch.manual_seed(0)
    x = torch.randn(48, 4)
    y = x[:, :3].argmax(1)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], callbacks=list(callbacks), verbose=0)
    return trial.with_train_data(x, y, batch_size=16, num_workers=0).with_val_data(x, y, batch_size=48, num_workers=0)


@pytest.fixture(autouse=True)
def quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def test_seeded_median_pruner_study_prunes_runs_that_end_cleanly(tmp_path):
    runs = {}

    def build(optuna_trial):
        recorder = EndRecorder()
        log = CSVLogger(str(tmp_path / f"trial{optuna_trial.number}.csv"))
        runs[optuna_trial.number] = (recorder, log)
        return small_trial(optuna_trial.suggest_float("lr", 1e-4, 1.0, log=True), [log, recorder])

    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=0), pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
    )
    study.optimize(optuna_objective(build, epochs=EPOCHS), n_trials=10)

    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert pruned and complete and len(pruned) + len(complete) == 10
    for trial in complete:
        recorder, log = runs[trial.number]
        assert recorder.ended_with == ["NoneType"] and sorted(trial.intermediate_values) == list(range(EPOCHS))
        assert trial.value == trial.intermediate_values[EPOCHS - 1]
    for trial in pruned:
        recorder, log = runs[trial.number]
        epochs_run = len(trial.intermediate_values)
        assert epochs_run < EPOCHS and recorder.ended_with == ["TrialPruned"]  # the Trial ended with on_end
        assert log._file is None  # the CSV log was closed, holding the epochs that ran
        assert len((tmp_path / f"trial{trial.number}.csv").read_text().splitlines()) == 1 + epochs_run


def test_pruning_reports_the_monitored_metric_per_epoch_into_the_history_of_the_trial():
    study = optuna.create_study(direction="maximize")
    optuna_trial = study.ask()
    history = small_trial(0.1, [OptunaPruning(optuna_trial, monitor="val_acc")]).run(3)
    assert study.trials[0].intermediate_values == {
        epoch: pytest.approx(record["val_acc"]) for epoch, record in enumerate(history)
    }


def test_objective_names_the_metrics_when_the_monitored_one_is_missing():
    study = optuna.create_study()
    with pytest.warns(UserWarning, match="val_f1"), pytest.raises(KeyError, match=r"no 'val_f1'.*'val_loss'"):
        study.optimize(optuna_objective(lambda optuna_trial: small_trial(0.1), 1, "val_f1"), n_trials=1)


def test_two_worker_processes_share_one_study_through_a_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage)  # made once; the workers load it
    trials_each = 4
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    commands = [[sys.executable, str(WORKER), storage, "shared", str(worker), str(trials_each)] for worker in (0, 1)]
    workers = [subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=environment) for command in commands]
    outputs = [worker.communicate(timeout=180) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-4000:]

    seen_by_each = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    for seen in seen_by_each:  # each worker sees all 8 trials, numbered once across both, from both workers
        assert sorted(map(int, seen)) == list(range(2 * trials_each))
        assert sorted(seen.values()) == [0] * trials_each + [1] * trials_each
    assert seen_by_each[0] == seen_by_each[1]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert all(trial.state.is_finished() for trial in study.trials) and len(study.trials) == 2 * trials_each


def test_without_optuna_the_error_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an environment without optuna looks like to import
    with pytest.raises(ImportError, match=r"pip install torchbearer\[optuna\]"):
        OptunaPruning(trial=None)
