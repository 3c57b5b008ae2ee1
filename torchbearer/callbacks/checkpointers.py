"""Checkpointers: callbacks that save the trial (or just the model weights) to disk during ``run``.

File names come from a format string filled with every state key (``epoch``, ``t``, ...) and every
current metric (``loss``, ``val_acc``, ...), e.g. ``'model.{epoch:02d}-{val_loss:.2f}.pt'`` gives
``model.03-0.42.pt``. Files are written atomically (:func:`torchbearer.io.atomic_save`), so a crash
never leaves a half-written checkpoint, and contain only plain types, so
``torch.load(path)`` (``weights_only=True``) or :func:`torchbearer.io.safe_load` reads them.

A full checkpoint is ``trial.state_dict()``: resume with ``trial.load_state_dict(torch.load(path))``.
With ``save_model_params_only=True`` it is the bare model's ``state_dict()``:
``model.load_state_dict(torch.load(path))``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from torchbearer.bases import Callback, get_metric
from torchbearer.callbacks.early_stopping import is_improvement, resolve_mode, worst_value
from torchbearer.distributed import is_rank_zero, model_state_dict, remove_checkpoint, save_checkpoint
from torchbearer.state import CALLBACK_LIST, EPOCH, METRICS, SELF

DEFAULT_FILEPATH = "model.{epoch:02d}-{val_loss:.2f}.pt"


class _FileNameFields:
    """The fields a file name pattern may use: the metrics, then the state keys as strings.

    Only the fields the pattern names are read, so formatting converts no other metric value.
    """

    def __init__(self, fileformat: str, state: Mapping) -> None:
        self._fileformat = fileformat
        self._state = {str(key): value for key, value in state.items()}
        metrics = state.get(METRICS)
        self._metrics = metrics if metrics is not None else {}

    def __getitem__(self, field: str) -> Any:
        if field in self._metrics:
            return self._metrics[field]
        if field in self._state:
            return self._state[field]
        raise KeyError(
            f"checkpoint file name {self._fileformat!r} uses the field {field!r}, which is neither a metric nor a "
            f"state key; available metrics: {sorted(map(str, self._metrics))}, state keys: {sorted(self._state)}. "
            "The default pattern needs 'val_loss' (a validation set); pass a filepath that uses available fields."
        )


def checkpoint_path(fileformat: str, state: Mapping) -> str:
    """Fill ``fileformat`` from the state keys and current metrics (metrics win on a clash).

    Raises:
        KeyError: The pattern names a field that is neither a metric nor a state key; the message
            names it and lists the available ones.
    """
    return fileformat.format_map(_FileNameFields(fileformat, state))


class _Checkpointer(Callback):
    """Base of the checkpointers: names, writes and replaces checkpoint files.

    Args:
        fileformat: The file name pattern (see the module docstring). A folder in it is created
            when missing.
        save_model_params_only: Save only the model's ``state_dict()`` instead of the trial's.
        pickle_module: Passed to :func:`torch.save`.
        pickle_protocol: Passed to :func:`torch.save`.
    """

    replaces_previous = False  # whether a new file replaces the one written before it (only the latest is kept)

    def __init__(
        self,
        fileformat: str,
        save_model_params_only: bool = False,
        pickle_module: Any = torch.serialization.pickle,
        pickle_protocol: int = torch.serialization.DEFAULT_PROTOCOL,
    ) -> None:
        self.fileformat = fileformat
        self.save_model_params_only = save_model_params_only
        self.pickle_module = pickle_module
        self.pickle_protocol = pickle_protocol
        self.most_recent: str | None = None
        self._decided_epoch: Any = None  # the epoch whose save this checkpointer has decided on
        self._due: tuple[str, str | None] | None = None  # (file to write, file it replaces) for that epoch
        folder = os.path.dirname(fileformat)
        if folder and "{" not in folder:  # a folder named by fields is made when the name is known
            os.makedirs(folder, exist_ok=True)

    def state_dict(self) -> dict:
        return {"most_recent": self.most_recent}

    def load_state_dict(self, state_dict: dict) -> _Checkpointer:
        self.most_recent = state_dict.get("most_recent", self.most_recent)
        self._decided_epoch, self._due = None, None
        return self

    def on_start(self, state: dict) -> None:
        self._decided_epoch, self._due = None, None

    def on_checkpoint(self, state: dict) -> None:
        """Decide, for every checkpointer of the trial, whether this epoch is saved; then write this one's file.

        Deciding all first means that the checkpoint written here holds every checkpointer's bookkeeping
        (best value, epoch count, last file name) as of this epoch, whatever their order in the list.
        """
        for callback in (self, *state.get(CALLBACK_LIST, ())):
            if isinstance(callback, _Checkpointer):
                callback._decide(state)
        if self._due is not None:
            (path, replaced), self._due = self._due, None
            self._write(state, path, replaced)

    def _decide(self, state: Mapping) -> None:
        """Once per epoch: whether this epoch is saved (:meth:`_saves_this_epoch`) and under which name."""
        epoch = state.get(EPOCH)
        if epoch is not None and epoch == self._decided_epoch:
            return
        self._decided_epoch = epoch
        if self._saves_this_epoch(state):
            path = checkpoint_path(self.fileformat, state)
            replaced, self.most_recent = self.most_recent, path
            self._due = (path, replaced if self.replaces_previous else None)

    def _saves_this_epoch(self, state: Mapping) -> bool:
        """Whether this epoch is saved; updates the checkpointer's own bookkeeping (counters, best value)."""
        return True

    def save_checkpoint(self, model_state: Mapping, overwrite_most_recent: bool = False) -> str:
        """Write a checkpoint for ``model_state`` now and return its path.

        Args:
            model_state: The trial's state for this call.
            overwrite_most_recent: Delete the file this checkpointer wrote last (if it has another
                name); it is deleted only after the new file is complete.

        Returns:
            The path written.
        """
        path = checkpoint_path(self.fileformat, model_state)
        replaced, self.most_recent = self.most_recent, path  # the checkpoint records its own name
        self._write(model_state, path, replaced if overwrite_most_recent else None)
        return path

    def _write(self, model_state: Mapping, path: str, replaced: str | None) -> None:
        """Write the checkpoint to ``path``, then delete ``replaced`` (unless it is the same file)."""
        folder = os.path.dirname(path)
        if folder and is_rank_zero():
            os.makedirs(folder, exist_ok=True)
        # Every rank gathers the content (a sharded model's state is a collective); rank zero writes it.
        save_checkpoint(self._content(model_state), path, model_state, self.pickle_module, self.pickle_protocol)
        if replaced is not None and os.path.abspath(replaced) != os.path.abspath(path):
            _delete_old_file(replaced, model_state)

    def _content(self, model_state: Mapping) -> dict:
        if self.save_model_params_only:
            return model_state_dict(model_state)
        return model_state[SELF].state_dict()


def _delete_old_file(path: str, state: Mapping) -> None:
    try:
        remove_checkpoint(path, state)
    except OSError:
        warnings.warn(
            f"Failed to delete old file. Are you running two checkpointers with the same filename? (file: {path!r})",
            stacklevel=3,
        )


class MostRecent(_Checkpointer):
    """Save a checkpoint after every epoch, deleting the previous one, so only the latest exists.

    Args:
        filepath: The file name pattern, e.g. ``'checkpoints/latest.pt'`` or ``'model.{epoch:02d}.pt'``.
        save_model_params_only: Save only the model's ``state_dict()`` instead of the trial's.
        pickle_module: Passed to :func:`torch.save`.
        pickle_protocol: Passed to :func:`torch.save`.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[MostRecent('latest.pt')])  # doctest: +SKIP
    """

    replaces_previous = True

    def __init__(
        self,
        filepath: str = DEFAULT_FILEPATH,
        save_model_params_only: bool = False,
        pickle_module: Any = torch.serialization.pickle,
        pickle_protocol: int = torch.serialization.DEFAULT_PROTOCOL,
    ) -> None:
        super().__init__(filepath, save_model_params_only, pickle_module, pickle_protocol)
        self.filepath = filepath


class Best(_Checkpointer):
    """Save a checkpoint whenever the monitored metric improves, deleting the previous best file.

    Every ``period`` epochs the monitored value is compared with the best so far; it improves when
    it beats it by more than ``min_delta``. The best value and the last file survive
    ``state_dict`` / ``load_state_dict``, so a resumed run only saves when it beats the earlier best.

    Args:
        filepath: The file name pattern.
        save_model_params_only: Save only the model's ``state_dict()`` instead of the trial's.
        monitor: The metric to watch.
        mode: ``'min'``, ``'max'`` or ``'auto'`` (``'max'`` if ``'acc'`` is in ``monitor``, else ``'min'``).
        period: Check every this many epochs.
        min_delta: The smallest change that counts as an improvement.
        pickle_module: Passed to :func:`torch.save`.
        pickle_protocol: Passed to :func:`torch.save`.

    Example:
        >>> best = Best('best.{epoch:02d}-{val_acc:.3f}.pt', monitor='val_acc')
        >>> trial = Trial(model, optimizer, loss, metrics=['acc'], callbacks=[best])  # doctest: +SKIP
    """

    replaces_previous = True

    def __init__(
        self,
        filepath: str = DEFAULT_FILEPATH,
        save_model_params_only: bool = False,
        monitor: str = "val_loss",
        mode: str = "auto",
        period: int = 1,
        min_delta: float = 0,
        pickle_module: Any = torch.serialization.pickle,
        pickle_protocol: int = torch.serialization.DEFAULT_PROTOCOL,
    ) -> None:
        super().__init__(filepath, save_model_params_only, pickle_module, pickle_protocol)
        self.filepath = filepath
        self.monitor = monitor
        self.mode = resolve_mode(mode, monitor)
        self.period = period
        self.min_delta = min_delta
        self.epochs_since_last_save = 0
        self.best: Any = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epochs": self.epochs_since_last_save, "best": self.best}

    def load_state_dict(self, state_dict: dict) -> Best:
        super().load_state_dict(state_dict)
        self.epochs_since_last_save = state_dict["epochs"]
        self.best = state_dict["best"]
        return self

    def on_start(self, state: dict) -> None:
        super().on_start(state)
        if self.best is None:
            self.best = worst_value(self.mode)

    def _saves_this_epoch(self, state: Mapping) -> bool:
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save < self.period:
            return False
        self.epochs_since_last_save = 0
        current = get_metric("Best Checkpoint", state, self.monitor)
        if current is None or not is_improvement(current, self.best, self.mode, self.min_delta):
            return False
        self.best = current
        return True


class Interval(_Checkpointer):
    """Save a checkpoint every ``period`` epochs (or training steps), keeping every file.

    With ``on_batch=True`` the count is of training steps and the file name may use the per-batch
    metrics (e.g. ``'model.{epoch}-{t}.pt'``; ``t`` is the batch index); nothing is saved at the end
    of an epoch.

    Args:
        filepath: The file name pattern; it should differ per save, or each save replaces the last.
        save_model_params_only: Save only the model's ``state_dict()`` instead of the trial's.
        period: Save every this many epochs (or steps).
        on_batch: Count training steps instead of epochs.
        pickle_module: Passed to :func:`torch.save`.
        pickle_protocol: Passed to :func:`torch.save`.

    Example:
        >>> every_100 = Interval('steps/model.{epoch}-{t}.pt', period=100, on_batch=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        filepath: str = DEFAULT_FILEPATH,
        save_model_params_only: bool = False,
        period: int = 1,
        on_batch: bool = False,
        pickle_module: Any = torch.serialization.pickle,
        pickle_protocol: int = torch.serialization.DEFAULT_PROTOCOL,
    ) -> None:
        super().__init__(filepath, save_model_params_only, pickle_module, pickle_protocol)
        self.filepath = filepath
        self.period = period
        self.on_batch = on_batch
        self.epochs_since_last_save = 0

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epochs": self.epochs_since_last_save}

    def load_state_dict(self, state_dict: dict) -> Interval:
        super().load_state_dict(state_dict)
        self.epochs_since_last_save = state_dict["epochs"]
        return self

    def on_step_training(self, state: dict) -> None:
        if self.on_batch and self._counts_to_period():
            self.save_checkpoint(state)

    def _saves_this_epoch(self, state: Mapping) -> bool:
        return not self.on_batch and self._counts_to_period()

    def _counts_to_period(self) -> bool:
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save < self.period:
            return False
        self.epochs_since_last_save = 0
        return True


def ModelCheckpoint(  # noqa: N802  (a factory with the 0.5 class-like name)
    filepath: str = DEFAULT_FILEPATH,
    save_model_params_only: bool = False,
    monitor: str = "val_loss",
    save_best_only: bool = False,
    mode: str = "auto",
    period: int = 1,
    min_delta: float = 0,
) -> _Checkpointer:
    """Make a checkpointer: :class:`Best` if ``save_best_only``, else :class:`Interval`.

    Args:
        filepath: The file name pattern.
        save_model_params_only: Save only the model's ``state_dict()`` instead of the trial's.
        monitor: The metric ``Best`` watches.
        save_best_only: Keep only the best checkpoint (by ``monitor``) instead of one per ``period``.
        mode: ``'min'``, ``'max'`` or ``'auto'``, for ``Best``.
        period: Save (or check) every this many epochs.
        min_delta: The smallest improvement, for ``Best``.

    Returns:
        A :class:`Best` or :class:`Interval` callback.

    Example:
        >>> checkpoint = ModelCheckpoint('best.pt', monitor='val_acc', save_best_only=True)
    """
    if save_best_only:
        return Best(filepath, save_model_params_only, monitor, mode, period, min_delta)
    return Interval(filepath, save_model_params_only, period)
