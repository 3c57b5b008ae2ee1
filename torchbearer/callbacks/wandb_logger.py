"""``WandbLogger``: parameters, metrics and files of a run in Weights & Biases (online or offline)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from torchbearer.callbacks.run_logger import FINISHED, RunLogger
from torchbearer.optional import import_optional

EPOCH_METRIC = "epoch"
BATCH_STEP_METRIC = "batch/step"
"""The x axes: epoch metrics are plotted against ``epoch``, batch metrics (``batch/<name>``) against ``batch/step``."""


def _import_wandb() -> Any:
    return import_optional("wandb", "WandbLogger", "wandb")


class WandbLogger(RunLogger):
    """Log a run to Weights & Biases: its config, every metric per epoch, and the checkpoint and history plot.

    What is logged and when is described in :class:`~torchbearer.callbacks.run_logger.RunLogger`. Epoch
    metrics keep their names and are plotted against ``epoch``; batch metrics are ``batch/<name>`` against
    ``batch/step``. The parameters go into the run's config. Files are written into the run's folder and
    saved with it. Offline (``WANDB_MODE=offline`` or ``mode='offline'``) everything stays in
    ``<dir>/wandb/offline-run-*`` until ``wandb sync``; a continued run then writes a new folder with the
    same run id, which ``wandb sync`` joins to the first. (Offline, a run resumed from a checkpoint older
    than what the run holds cannot learn which epochs W&B already has, and logs them again.) Each logger's
    run is its own (``reinit='create_new'``): it neither ends nor is ended by the user's ``wandb.init`` runs.

    Args:
        project: The W&B project; default W&B's own (``WANDB_PROJECT``, else ``uncategorized``).
        name: The run's display name; default one W&B makes up.
        config: More parameters for the config (they win over the collected ones of the same name).
        batch_interval: Seconds between two logs of the running training metrics; ``None`` logs per epoch only.
        log_checkpoint: ``True`` logs the trial's state dict as ``checkpoint.pt``, a path logs that file,
            ``False`` none.
        log_history_plot: Log ``history.png`` (needs matplotlib).
        **init_kwargs: Passed to ``wandb.init`` (``dir``, ``mode``, ``entity``, ``tags``, ``group``, ...).

    Raises:
        ImportError: If wandb is not installed.

    Example:
        >>> logger = WandbLogger(project='digits', config={'dropout': 0.2}, mode='offline')
        >>> Trial(model, optimizer, loss, ['acc'], callbacks=[logger]).with_generators(train, val).run(10)
        >>> # then, when online: wandb sync wandb/offline-run-*
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        batch_interval: float | None = None,
        log_checkpoint: bool | str = True,
        log_history_plot: bool = True,
        **init_kwargs: Any,
    ) -> None:
        _import_wandb()  # fail now, not when training starts
        super().__init__(config, batch_interval, log_checkpoint, log_history_plot)
        self.project = project
        self.name = name
        self.init_kwargs = init_kwargs
        self.run: Any = None
        """The open ``wandb.Run`` (``None`` between calls)."""
        self._defined: set[str] = set()

    def _open(self, run_id: str | None) -> str:
        wandb = _import_wandb()
        resume = {} if run_id is None else {"id": run_id, "resume": "allow"}
        self.run = wandb.init(project=self.project, name=self.name, reinit="create_new", **resume, **self.init_kwargs)
        self.run.define_metric(EPOCH_METRIC)
        self.run.define_metric(BATCH_STEP_METRIC)
        self.run.define_metric("batch/*", step_metric=BATCH_STEP_METRIC)
        self._defined = set()
        return self.run.id

    def _log_parameters(self, parameters: dict[str, Any]) -> None:
        self.run.config.update(parameters, allow_val_change=True)

    def _log_metrics(self, metrics: dict[str, float], step: int, batch: bool) -> None:
        if batch:
            self.run.log({**{f"batch/{key}": value for key, value in metrics.items()}, BATCH_STEP_METRIC: step})
            return
        for key in metrics.keys() - self._defined:  # plotted against the epoch, not W&B's own step counter
            self.run.define_metric(key, step_metric=EPOCH_METRIC)
            self._defined.add(key)
        self.run.log({**metrics, EPOCH_METRIC: step})

    def _logged_until(self) -> tuple[int, int]:
        # A resumed online run starts with the summary of what it logged before; an offline one knows nothing.
        summary = self.run.summary
        return int(summary.get(EPOCH_METRIC, -1)), int(summary.get(BATCH_STEP_METRIC, -1))

    def _log_files(self, write: Callable[[str], list[str]]) -> None:
        reopened = self.run is None
        if reopened:  # asked for after the run ended: continue it for the files
            if self.run_id is None:
                raise RuntimeError("WandbLogger has no W&B run to log files to yet: run the trial first")
            self._open(self.run_id)
        try:
            for path in write(self.run.dir):  # files in the run's folder are kept with the run
                self.run.save(path, base_path=os.path.dirname(path), policy="now")
        finally:
            if reopened:
                self._close(FINISHED)

    def _close(self, status: str) -> None:
        run, self.run = self.run, None
        run.finish(exit_code=0 if status == FINISHED else 1)
