"""One worker of an Optuna study shared through a storage URL (run by ``test_optuna_pruning.py``).

Usage: ``python optuna_study_worker.py STORAGE STUDY_NAME WORKER TRIALS``. The worker runs ``TRIALS`` trials
of the study, waits (a minute at most) until the study holds every worker's trials, and prints what it
sees as one JSON line: the worker of each trial, by trial number.
"""

from __future__ import annotations

import json
import sys
import time

import optuna
import torch
from torch import nn

from torchbearer import Trial
from torchbearer.callbacks import optuna_objective

WORKERS = 2


def build(optuna_trial: optuna.Trial, worker: int) -> Trial:
    optuna_trial.set_user_attr("worker", worker)
    lr = optuna_trial.suggest_float("lr", 1e-3, 1.0, log=True)
    torch.manual_seed(0)
    x = torch.randn(48, 4)
    y = x[:, :3].argmax(1)
    model = nn.Linear(4, 3)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(), ["loss"], verbose=0)
    return trial.with_train_data(x, y, batch_size=16, num_workers=0).with_val_data(x, y, batch_size=48, num_workers=0)


def main() -> None:
    storage, study_name, worker, trials = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.TPESampler(seed=worker),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )  # fmt: skip
    study.optimize(optuna_objective(lambda optuna_trial: build(optuna_trial, worker), epochs=3), n_trials=trials)
    deadline = time.monotonic() + 60
    while (
        len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
        < (WORKERS * trials)
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    print(json.dumps({trial.number: trial.user_attrs["worker"] for trial in study.get_trials()}))


if __name__ == "__main__":
    main()
