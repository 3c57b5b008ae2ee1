"""``MLflowLogger``: parameters, metrics and files of a run in an MLflow tracking server or database."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from torchbearer.callbacks.run_logger import RunLogger
from torchbearer.optional import import_optional

LAST_EPOCH_TAG = "torchbearer.last_epoch"
LAST_BATCH_TAG = "torchbearer.last_batch_step"
"""Run tags holding the last epoch and batch step logged, so a resumed run knows what the run already has."""


def _import_mlflow() -> Any:
    return import_optional("mlflow", "MLflowLogger", "mlflow")


class MLflowLogger(RunLogger):
    """Log a run to MLflow: its parameters, every metric per epoch, and the checkpoint and history plot.

    What is logged and when is described in :class:`~torchbearer.callbacks.run_logger.RunLogger`. Epoch metrics
    keep their names (``loss``, ``val_acc``) with the epoch as step; batch metrics are ``batch/<name>``. The
    parameters are those of the run that creates the MLflow run: MLflow parameters cannot change, so a
    continued run adds only names the run does not have yet. Talks to MLflow through ``MlflowClient`` (no
    global active run), so several loggers and the user's own ``mlflow`` calls do not interfere.

    Args:
        tracking_uri: The tracking server (``http://host:5000``) or database (``sqlite:///mlflow.db``); default
            MLflow's own: the ``MLFLOW_TRACKING_URI`` environment variable, else its local default.
        experiment_name: The experiment, created if missing; default the ``MLFLOW_EXPERIMENT_NAME`` (or
            ``MLFLOW_EXPERIMENT_ID``) environment variable, else MLflow's ``Default`` experiment.
        run_name: The run's name; default one MLflow makes up.
        params: More parameters to log (they win over the collected ones of the same name).
        tags: Tags for a new run.
        batch_interval: Seconds between two logs of the running training metrics; ``None`` logs per epoch only.
        log_checkpoint: ``True`` logs the trial's state dict as ``checkpoint.pt``, a path logs that file,
            ``False`` none.
        log_history_plot: Log ``history.png`` (needs matplotlib).

    Raises:
        ImportError: If mlflow is not installed.

    Example:
        >>> logger = MLflowLogger('sqlite:///mlflow.db', experiment_name='digits', params={'dropout': 0.2})
        >>> Trial(model, optimizer, loss, ['acc'], callbacks=[logger]).with_generators(train, val).run(10)
        >>> # then browse with: mlflow ui --backend-store-uri sqlite:///mlflow.db
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        batch_interval: float | None = None,
        log_checkpoint: bool | str = True,
        log_history_plot: bool = True,
    ) -> None:
        _import_mlflow()  # fail now, not when training starts
        super().__init__(params, batch_interval, log_checkpoint, log_history_plot)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.tags = dict(tags or {})
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The ``mlflow.MlflowClient`` this logger writes with (created at first use)."""
        if self._client is None:
            self._client = _import_mlflow().MlflowClient(self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name is None:
            return os.environ.get("MLFLOW_EXPERIMENT_ID", "0")  # "0": the Default experiment
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else self.client.create_experiment(name)

    def _open(self, run_id: str | None) -> str:
        if run_id is None:
            run = self.client.create_run(self._experiment_id(), run_name=self.run_name, tags=self.tags)
            return run.info.run_id
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _log_parameters(self, parameters: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(key, str(value)) for key, value in parameters.items() if key not in existing]
        if new:
            self.client.log_batch(self.run_id, params=new)

    def _log_metrics(self, metrics: dict[str, float], step: int, batch: bool) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        prefix, tag = ("batch/", LAST_BATCH_TAG) if batch else ("", LAST_EPOCH_TAG)
        entries = [Metric(prefix + key, value, now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=entries, tags=[RunTag(tag, str(step))])

    def _logged_until(self) -> tuple[int, int]:
        tags = self.client.get_run(self.run_id).data.tags
        return int(tags.get(LAST_EPOCH_TAG, -1)), int(tags.get(LAST_BATCH_TAG, -1))

    def _log_files(self, write: Callable[[str], list[str]]) -> None:
        if self.run_id is None:
            raise RuntimeError("MLflowLogger has no MLflow run to log files to yet: run the trial first")
        with tempfile.TemporaryDirectory(prefix="torchbearer-mlflow-") as folder:
            for path in write(folder):
                self.client.log_artifact(self.run_id, path)

    def _close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)
