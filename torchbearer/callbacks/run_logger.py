"""What the experiment-tracker loggers share: the run's parameters, and when to log what.

:class:`RunLogger` holds everything :class:`~torchbearer.callbacks.MLflowLogger` and
:class:`~torchbearer.callbacks.WandbLogger` do alike; each of them only says how to open, write to and
close a run of its tracker. :func:`run_parameters` collects the parameters both log at the start.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from torchbearer import distributed
from torchbearer.bases import Callback
from torchbearer.callbacks.printer import _Throttle
from torchbearer.devices import unwrap_model
from torchbearer.io import atomic_save
from torchbearer.metric_values import to_python
from torchbearer.state import (
    ACCUMULATION_STEPS,
    AUTOCAST_DTYPE,
    BATCH,
    EPOCH,
    HISTORY,
    MAX_EPOCHS,
    METRICS,
    MODEL,
    OPTIMIZER,
    SELF,
    STEPS,
    TRAIN_GENERATOR,
)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
"""How a run ended: trained to the end, raised an error, or was interrupted (Ctrl-C, or pruned by Optuna)."""

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_PLOT_FILE = "history.png"
_PRECISIONS = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _plain(value: Any) -> Any:
    """A hyperparameter as a number, string, bool or tuple of them (a one-element tensor becomes its number)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else None  # a CPU-GPU sync point, once per run at most
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return None if any(item is None for item in items) else tuple(items)
    return value if isinstance(value, (bool, int, float, str)) else None


def optimizer_parameters(optimizer: Any) -> dict[str, Any]:
    """``optimizer`` (the class name) and ``optimizer.<name>`` for each hyperparameter of its param group.

    With several param groups the names are ``optimizer.<group index>.<name>``. Values that are not numbers,
    strings, bools or tuples of them (and ``None``) are left out.
    """
    groups = getattr(optimizer, "param_groups", None) or []
    parameters: dict[str, Any] = {"optimizer": type(optimizer).__name__}
    for index, group in enumerate(groups):
        prefix = "optimizer." if len(groups) == 1 else f"optimizer.{index}."
        for name, value in group.items():
            value = _plain(value) if name != "params" else None
            if value is not None:
                parameters[prefix + name] = value
    return parameters


def run_parameters(state: Mapping) -> dict[str, Any]:
    """The parameters of a ``run``: optimizer class and hyperparameters, batch size, epochs, precision,
    gradient accumulation, world size, and the model's class and parameter count.

    Args:
        state: The state at ``on_start`` (or later) of a ``run``.

    Returns:
        A flat dict of numbers, strings, bools and tuples. ``batch_size`` is left out when the training data
        is not a ``DataLoader`` (nor anything else with a ``batch_size``).

    Example:
        >>> run_parameters(trial.state)  # doctest: +SKIP
        {'epochs': 3, 'precision': 'fp32', 'accumulation_steps': 1, 'world_size': 1, 'model': 'Linear', ...}
    """
    model = unwrap_model(state[MODEL])
    parameters: dict[str, Any] = {
        "epochs": state[MAX_EPOCHS],
        "precision": _PRECISIONS.get(state.get(AUTOCAST_DTYPE), str(state.get(AUTOCAST_DTYPE))),
        "accumulation_steps": state.get(ACCUMULATION_STEPS) or 1,
        "world_size": distributed.get_world_size(),
        "model": type(model).__name__,
    }
    if isinstance(model, torch.nn.Module):
        parameters["model_parameters"] = sum(parameter.numel() for parameter in model.parameters())
    batch_size = getattr(state.get(TRAIN_GENERATOR), "batch_size", None)
    if batch_size is not None:
        parameters["batch_size"] = batch_size
    parameters.update(optimizer_parameters(state[OPTIMIZER]))
    return parameters


_STEP_COUNTS = ("train_steps", "validation_steps")  # in the history records (and the metrics during replay)


def _numbers(metrics: Mapping) -> dict[str, float]:
    """The metrics a tracker can plot: the numbers (lists, strings, ``None`` and the step counts are left out)."""
    values = to_python(metrics)  # tensors to Python numbers: one CPU-GPU sync per device
    return {
        str(key): float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and str(key) not in _STEP_COUNTS
    }


def _is_pruned(error: BaseException) -> bool:
    optuna = sys.modules.get("optuna")  # an optuna.TrialPruned can only exist once optuna is imported
    return optuna is not None and isinstance(error, optuna.TrialPruned)


def end_status(error: BaseException | None) -> str:
    """:data:`FINISHED` without an error, :data:`KILLED` for Ctrl-C or an Optuna prune, else :data:`FAILED`."""
    if error is None:
        return FINISHED
    return KILLED if isinstance(error, KeyboardInterrupt) or _is_pruned(error) else FAILED


class RunLogger(Callback):
    """Base class of the experiment-tracker loggers: what is logged, when, and by which process.

    * The tracker's run opens at ``on_start`` and closes at ``on_end`` of every ``run``, ``evaluate`` or
      ``predict``; a later call, or a trial resumed from a checkpoint (the run id is in :meth:`state_dict`),
      continues the same run. When the call raises, the run closes as failed (killed for Ctrl-C or an Optuna
      prune), and the error goes on to the caller.
    * At the first training epoch of a ``run``: the parameters (:func:`run_parameters` and ``params``).
    * At the end of each training epoch: every numeric metric, with the epoch (0-based) as step. After an
      ``evaluate``: its metrics, at the last trained epoch's step.
    * With ``batch_interval``: the running training metrics as ``batch/<name>``, at most once per
      ``batch_interval`` seconds, with the number of training batches so far as step. Without it the
      logger does nothing per batch.
    * When a ``run`` ends without error, or on request (:meth:`log_artifacts`): the checkpoint and
      ``history.png`` (:func:`torchbearer.plotting.plot_history`) as files of the run.

    No step is logged twice: a run resumed from a checkpoint older than what the tracker already holds
    skips the epochs (and batches) the run logged before (with a warning), as far as the tracker can say
    (MLflow always; W&B online). Under ``torchrun`` only rank zero talks to the tracker.

    Subclasses implement ``_open``, ``_log_parameters``, ``_log_metrics``, ``_logged_until``,
    ``_log_files`` and ``_close``.

    Args:
        params: More parameters to log (they win over the collected ones of the same name).
        batch_interval: Seconds between two logs of the running training metrics; ``None`` logs per epoch
            only. Each log reads the batch's metrics to the host: a CPU-GPU sync.
        log_checkpoint: ``True`` logs the trial's state dict as ``checkpoint.pt``; a path logs that file
            instead (e.g. one a checkpointer writes); ``False`` logs none.
        log_history_plot: Log ``history.png``, a plot of the history (needs matplotlib).
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        batch_interval: float | None = None,
        log_checkpoint: bool | str = True,
        log_history_plot: bool = True,
    ) -> None:
        if batch_interval is not None and not (isinstance(batch_interval, (int, float)) and batch_interval >= 0):
            raise ValueError(f"batch_interval must be a number of seconds >= 0 or None, got {batch_interval!r}")
        self.params = dict(params or {})
        self.batch_interval = batch_interval
        self.log_checkpoint = log_checkpoint
        self.log_history_plot = log_history_plot
        self.run_id: str | None = None
        self._is_open = False
        self._error_before_start: BaseException | None = None
        self._training = False  # this call trains (on_start_training came): it is a run, not evaluate/predict
        self._parameters_due = True
        self._logged_epoch = -1  # the last epoch (and batch step) the tracker holds, as far as this process knows
        self._logged_batch = -1
        self._last_step_keys: tuple[int, set] = (-1, set())
        self._batches_seen = 0
        self._throttle = _Throttle()
        self._trial: Any = None
        if batch_interval is not None:  # bound only here, so a logger without batch logs adds no per-batch call
            self.on_step_training = self._log_batch

    # ------------------------------------------------------------------------------- what the tracker does
    def _open(self, run_id: str | None) -> str:
        """Open a new run (``run_id`` None) or continue run ``run_id``; return the run's id."""
        raise NotImplementedError

    def _log_parameters(self, parameters: dict[str, Any]) -> None:
        raise NotImplementedError

    def _log_metrics(self, metrics: dict[str, float], step: int, batch: bool) -> None:
        """Log epoch metrics (``batch`` False: step is the epoch) or batch metrics (named ``batch/<name>``)."""
        raise NotImplementedError

    def _logged_until(self) -> tuple[int, int]:
        """The last epoch and batch step the open run holds (-1 for none), as far as the tracker says."""
        return -1, -1

    def _log_files(self, write: Callable[[str], list[str]]) -> None:
        """Call ``write(folder)``, which writes files into ``folder`` and returns their paths; log them."""
        raise NotImplementedError

    def _close(self, status: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        return {"run_id": self.run_id}

    def load_state_dict(self, state_dict: dict) -> RunLogger:
        run_id = state_dict.get("run_id", self.run_id)
        if run_id != self.run_id:  # what this process knows of the run it logged before no longer applies
            self.run_id, self._logged_epoch, self._logged_batch, self._parameters_due = run_id, -1, -1, True
        return self

    # ------------------------------------------------------------------------------- hooks
    def on_start(self, state: dict) -> None:
        # An exception being handled already (a run started inside an ``except`` block) is not this run's failure.
        self._error_before_start = sys.exc_info()[1]
        self._training, self._trial = False, state[SELF]
        if not distributed.is_rank_zero():  # under torchrun only rank zero talks to the tracker
            return
        continuing = self.run_id is not None
        self.run_id = self._open(self.run_id)
        self._is_open = True
        if continuing:
            epoch, batch = self._logged_until()
            self._logged_epoch, self._logged_batch = max(self._logged_epoch, epoch), max(self._logged_batch, batch)
            self._warn_if_replaying(len(state[HISTORY]))

    def _warn_if_replaying(self, first_epoch: int) -> None:
        if self._logged_epoch >= first_epoch:
            warnings.warn(
                f"{type(self).__name__}: run {self.run_id} already holds epochs {first_epoch} to "
                f"{self._logged_epoch} (logged after the checkpoint being resumed was saved); they are not "
                "logged again",
                stacklevel=2,
            )

    def on_start_training(self, state: dict) -> None:
        self._training = True
        if self._parameters_due and self._is_open:
            self._log_parameters({**run_parameters(state), **self.params})
            self._parameters_due = False

    def _log_batch(self, state: dict) -> None:
        self._batches_seen += 1
        if not (self._is_open and self._throttle.ready(self.batch_interval)):
            return
        step = self._batch_step(state)
        if step > self._logged_batch:
            self._log_metrics(_numbers(state[METRICS]), step, batch=True)
            self._logged_batch = step

    def _batch_step(self, state: Mapping) -> int:
        """Training batches so far, counted from the epoch and batch so a resumed run goes on where it was."""
        steps = state[STEPS]
        if isinstance(steps, int) and steps > 0:
            return state[EPOCH] * steps + state[BATCH]
        return self._batches_seen - 1  # an endless or unknown number of batches per epoch

    def on_end_epoch(self, state: dict) -> None:
        if not self._is_open:
            return
        metrics = _numbers(state[METRICS])
        if self._training:
            step = state[EPOCH]
            if step > self._logged_epoch:
                self._log_metrics(metrics, step, batch=False)
                self._logged_epoch, self._last_step_keys = step, (step, set(metrics))
            return
        # evaluate: at the last trained epoch, leaving out what that step already holds (val_ metrics
        # after an evaluate on the validation data would repeat the run's own)
        step = max(len(state[HISTORY]) - 1, 0)
        logged = self._last_step_keys[1] if self._last_step_keys[0] == step else set()
        new = {key: value for key, value in metrics.items() if key not in logged}
        if new:
            self._log_metrics(new, step, batch=False)
            self._last_step_keys = (step, logged | set(new))

    def on_end(self, state: dict) -> None:
        error = sys.exc_info()[1]
        status = end_status(None if error is self._error_before_start else error)
        try:
            if status == FINISHED and self._training:
                self._log_artifacts(state)
        except BaseException:
            status = FAILED  # the files could not be logged: the run did not end as it should
            raise
        finally:
            if self._is_open:
                self._is_open = False
                self._close(status)

    # ------------------------------------------------------------------------------- artifacts
    def log_artifacts(self, trial: Any = None) -> None:
        """Log the checkpoint and ``history.png`` now (as chosen by ``log_checkpoint`` and ``log_history_plot``).

        Under ``torchrun`` every rank must call it (the trial's state dict is gathered from all of them).

        Args:
            trial: The Trial to take them from; default the one this logger last ran with.

        Raises:
            RuntimeError: If no trial is given and this logger has not run yet.
        """
        trial = trial if trial is not None else self._trial
        if trial is None:
            raise RuntimeError(
                f"{type(self).__name__}.log_artifacts() has no trial: pass it, log_artifacts(trial), or call it "
                "after the logger has been part of a run"
            )
        self._log_artifacts(trial.state)

    def _log_artifacts(self, state: Mapping) -> None:
        content = self._checkpoint_content(state)  # on every rank: gathering a distributed state dict is collective
        if not distributed.is_rank_zero():
            return
        history = list(state[HISTORY])

        def write(folder: str) -> list[str]:
            paths = []
            if content is not None:
                paths.append(os.path.join(folder, CHECKPOINT_FILE))
                atomic_save(content, paths[-1])
            if isinstance(self.log_checkpoint, (str, os.PathLike)):
                paths.append(self._existing_checkpoint(str(self.log_checkpoint)))
            if self.log_history_plot:
                paths.append(_plot_history(history, os.path.join(folder, HISTORY_PLOT_FILE)))
            return [path for path in paths if path is not None]

        self._log_files(write)

    def _checkpoint_content(self, state: Mapping) -> dict | None:
        if self.log_checkpoint is not True:
            return None
        settings = distributed.settings_of(state)
        if settings is not None and settings.is_sharded():
            if distributed.is_rank_zero():
                warnings.warn(
                    f"{type(self).__name__}: a sharded FSDP state dict is written by every rank, so it is not "
                    "logged; save it with a checkpointer and pass its path as log_checkpoint",
                    stacklevel=4,
                )
            return None
        return state[SELF].state_dict()

    def _existing_checkpoint(self, path: str) -> str | None:
        if os.path.isfile(path):
            return path
        warnings.warn(f"{type(self).__name__}: log_checkpoint={path!r} does not exist (yet); not logged", stacklevel=5)
        return None


def _plot_history(history: list, path: str) -> str | None:
    """Write ``history.png`` and return its path; ``None`` (with a warning) when there is nothing to plot."""
    from torchbearer.plotting import plot_history

    try:
        return plot_history(history, path)
    except (ImportError, ValueError) as error:
        warnings.warn(f"history.png is not logged: {error}", stacklevel=5)
        return None
