"""Hyperparameter search with Optuna: a seeded study that prunes the runs falling behind, and its figures.

``build`` makes a Trial from an ``optuna.Trial``'s suggestions (learning rate, hidden width, dropout);
``optuna_objective`` turns it into the study's objective, adding ``OptunaPruning``, which reports the
validation accuracy after every epoch. The ``MedianPruner`` stops a trial whose accuracy is below the median
of the earlier trials at the same epoch. The study lives in a journal file: start this script a second time
with the same ``--out`` (in another terminal, or on another machine sharing the folder) and both processes
work on one search, each seeing the other's trials.

Writes ``optimisation_history.png`` and ``param_importances.png`` (Optuna's own matplotlib plots) and the
journal ``study.log`` under ``runs/hyperparameter_search/``.
"""

from __future__ import annotations

import warnings

import optuna
import torch
from common import digits, parse_args, save
from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances
from torch import nn

from torchbearer import Trial
from torchbearer.callbacks import optuna_objective
from torchbearer.cv_utils import train_valid_splitter


def make_builder(x_train, y_train, x_val, y_val):
    """The function from an ``optuna.Trial`` to a ready-to-run Trial: every hyperparameter is a suggestion."""

    def build(optuna_trial: optuna.Trial) -> Trial:
        lr = optuna_trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        hidden = optuna_trial.suggest_int("hidden", 8, 128, log=True)
        dropout = optuna_trial.suggest_float("dropout", 0.0, 0.5)
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10)
        )
        trial = Trial(model, torch.optim.Adam(model.parameters(), lr=lr), nn.CrossEntropyLoss(), ["acc"], verbose=0)
        trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
        return trial.with_val_data(x_val, y_val, batch_size=128, num_workers=0)

    return build


def main() -> None:
    args = parse_args(__doc__, "hyperparameter_search")
    x_train, y_train, x_val, y_val = train_valid_splitter(*digits(limit=600 if args.fast else None), 0.25)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(args.out / "study.log")))
    study = optuna.create_study(
        study_name="digits-mlp", storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed), pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )  # fmt: skip
    objective = optuna_objective(
        make_builder(x_train, y_train, x_val, y_val), epochs=4 if args.fast else 15, monitor="val_acc"
    )
    study.optimize(objective, n_trials=10 if args.fast else 50)

    states = [trial.state for trial in study.trials]
    complete, pruned = states.count(optuna.trial.TrialState.COMPLETE), states.count(optuna.trial.TrialState.PRUNED)
    print(f"{len(states)} trials: {complete} complete, {pruned} pruned")
    best = study.best_trial
    settings = ", ".join(f"{name}={value:.4g}" for name, value in best.params.items())
    print(f"best trial {best.number}: val_acc={best.value:.4f} with {settings}")

    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        save(plot_optimization_history(study).figure, args.out / "optimisation_history.png")
        save(plot_param_importances(study).figure, args.out / "param_importances.png")


if __name__ == "__main__":
    main()
