"""Hyperparameter search with Optuna: ``OptunaPruning`` stops runs that fall behind; ``optuna_objective``.

A search is an Optuna study whose objective builds a Trial from the ``optuna.Trial``'s suggestions, runs it and
returns the monitored metric. :func:`optuna_objective` writes that objective from a function that builds the
Trial; :class:`OptunaPruning` reports the metric after every epoch, so Optuna's pruner can stop the runs that
fall behind the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchbearer.bases import Callback, get_metric
from torchbearer.optional import import_optional
from torchbearer.state import CALLBACK_LIST, EPOCH


def _import_optuna() -> Any:
    return import_optional("optuna", "OptunaPruning", "optuna")


class OptunaPruning(Callback):
    """Report a metric to an ``optuna.Trial`` after every epoch, and end the run when Optuna prunes it.

    After each epoch of a ``run`` (at ``on_checkpoint``: the epoch is in the history and the other callbacks
    have seen its metrics) the monitored value is reported with the epoch as step. When the study's pruner
    says to stop, this raises ``optuna.TrialPruned``: the Trial gives every callback its ``on_end`` (files
    close, loggers end their runs as killed) and the exception reaches the study, which records the trial as
    pruned. Checkpointers listed after this callback do not save the pruned epoch; list it last. One process
    only: under ``torchrun`` every rank would need the same decision.

    Args:
        trial: The ``optuna.Trial`` of the objective being evaluated.
        monitor: The metric to report, e.g. ``'val_loss'`` or ``'val_acc'`` (the study's direction says
            which way is better).

    Raises:
        optuna.TrialPruned: From ``on_checkpoint``, when the pruner stops the trial.

    Example:
        >>> def objective(optuna_trial):
        ...     model = Net(hidden=optuna_trial.suggest_int('hidden', 16, 128))
        ...     lr = optuna_trial.suggest_float('lr', 1e-4, 1e-1, log=True)
        ...     optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        ...     trial = Trial(model, optimizer, loss, ['acc'], callbacks=[OptunaPruning(optuna_trial, 'val_acc')])
        ...     return trial.with_generators(train, val).run(10)[-1]['val_acc']
        >>> optuna.create_study(direction='maximize', pruner=optuna.pruners.MedianPruner()).optimize(objective, 20)
    """

    def __init__(self, trial: Any, monitor: str = "val_loss") -> None:
        self._optuna = _import_optuna()
        self.trial = trial
        self.monitor = monitor

    def on_checkpoint(self, state: dict) -> None:
        value = get_metric(type(self).__name__, state, self.monitor)
        if value is None:
            return
        epoch = state[EPOCH]
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise self._optuna.TrialPruned(f"pruned after epoch {epoch}: {self.monitor}={value:.6g}")


def optuna_objective(
    build_trial: Callable[[Any], Any], epochs: int, monitor: str = "val_loss"
) -> Callable[[Any], float]:
    """Turn a function that builds a Trial from an ``optuna.Trial``'s suggestions into an Optuna objective.

    The objective builds the Trial, adds :class:`OptunaPruning` for ``monitor`` (unless the Trial has one),
    runs it for ``epochs`` and returns the last epoch's ``monitor`` value.

    Args:
        build_trial: ``build_trial(optuna_trial)`` returns a Trial with its data (it calls
            ``optuna_trial.suggest_*`` for the hyperparameters).
        epochs: The epochs to run.
        monitor: The metric to prune on and to return.

    Returns:
        ``objective(optuna_trial) -> float``, for ``study.optimize``.

    Raises:
        KeyError: (from the objective) If the history has no ``monitor`` value.

    Example:
        >>> def build(optuna_trial):
        ...     lr = optuna_trial.suggest_float('lr', 1e-4, 1e-1, log=True)
        ...     model = Net()
        ...     return Trial(model, torch.optim.SGD(model.parameters(), lr), loss, ['acc']).with_generators(train, val)
        >>> study = optuna.create_study(direction='maximize', pruner=optuna.pruners.MedianPruner())
        >>> study.optimize(optuna_objective(build, epochs=10, monitor='val_acc'), n_trials=20)
    """

    def objective(optuna_trial: Any) -> float:
        trial = build_trial(optuna_trial)
        callbacks = trial.state[CALLBACK_LIST]
        if not any(isinstance(callback, OptunaPruning) for callback in callbacks):
            callbacks.append([OptunaPruning(optuna_trial, monitor)])
        history = trial.run(epochs)
        if not history or monitor not in history[-1]:
            known = sorted(history[-1]) if history else []
            raise KeyError(f"optuna_objective: the history has no {monitor!r} to return; its metrics are {known}")
        return float(history[-1][monitor])

    return objective
