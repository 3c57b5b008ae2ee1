"""Resuming a Trial: what its state dict holds, where training stood, and how a loaded state dict is restored.

A Trial state dict holds, besides the model, optimizer, history and callbacks, what only this process
can restore (its metrics' partial sums and random generator states; every rank's in a distributed
Trial) and the training progress: at an epoch boundary, or inside a training pass at a given batch.

Loading is in two steps. ``Trial.load_state_dict`` loads the model, optimizer, history, callbacks and
scaler at once, and keeps the metric and random state until the next ``run`` starts
(:meth:`ResumeBookkeeping.apply_pending`): only then does each rank know which part is its own. A
checkpoint saved mid-epoch is resumed by replaying the interrupted epoch's training loader, with the
random state of that epoch's start, up to the saved batch (:meth:`ResumeBookkeeping.start_training_iterator`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from torchbearer import distributed, rng
from torchbearer.devices import unwrap_model
from torchbearer.errors import StateDictError
from torchbearer.state import (
    BATCH,
    CALLBACK_LIST,
    EPOCH,
    GENERATOR,
    GRAD_SCALER,
    HISTORY,
    ITERATOR,
    METRIC_LIST,
    MODEL,
    OPTIMIZER,
    SAMPLER,
    VERSION,
)
from torchbearer.version import __version__


class ResumeBookkeeping:
    """A Trial's resume bookkeeping: where training stands, and what a loaded state dict still has to restore.

    The Trial sets :attr:`running_state` for the length of a ``run`` and :attr:`training_pass_active`
    around each training pass, so that a checkpoint written by a callback knows whether it is mid-epoch.
    """

    def __init__(self) -> None:
        self.running_state: Mapping | None = None  # the state of the run in progress, for mid-epoch checkpoints
        self.training_pass_active = False
        self._epoch_start_rng: dict | None = None
        self._resume_point: dict | None = None
        self._pending: tuple | None = None

    def end_run(self) -> None:
        """Forget the run that just ended (or failed)."""
        self.running_state, self.training_pass_active = None, False

    def resumable(self) -> bool:
        """True where a checkpoint written now resumes exactly: inside a training pass, between batches, or
        once the epoch's record is in the history (not between the end of the training pass and the record)."""
        state = self.running_state
        return state is not None and (self.training_pass_active or len(state[HISTORY]) > state[EPOCH])

    # ----------------------------------------------------------------------------------- saving
    def state_dict(self, trial_state: Mapping, **kwargs: Any) -> dict:
        """The Trial state dict: everything needed to resume, as plain types (loads with ``weights_only=True``).

        Args:
            trial_state: The Trial's state.
            **kwargs: Passed to the model's ``state_dict``.
        """
        scaler = trial_state[GRAD_SCALER]
        return {
            str(VERSION): release(__version__),
            str(MODEL): distributed.model_state_dict(trial_state, **kwargs),
            str(OPTIMIZER): distributed.optimizer_state_dict(trial_state),
            str(HISTORY): [dict(record) for record in trial_state[HISTORY]],
            str(CALLBACK_LIST): trial_state[CALLBACK_LIST].state_dict(),
            **self.own_state(trial_state),
            **distributed.per_rank_states(trial_state, self.own_state(trial_state)),
            "progress": self.progress(trial_state),
            **({str(GRAD_SCALER): scaler.state_dict()} if scaler is not None else {}),
        }

    def own_state(self, trial_state: Mapping) -> dict:
        """What this process alone restores: metric sums, generator states and (mid-epoch) the epoch's start RNG.

        Between loading a checkpoint and the run that resumes it, that is the checkpoint's, still to restore.
        """
        loaded = self._loaded_own_state()
        if loaded is not None:
            return loaded
        own = {str(METRIC_LIST): trial_state[METRIC_LIST].state_dict(), "rng": rng.get_state()}
        if self.mid_epoch():
            own["epoch_start_rng"] = self._epoch_start_rng
        return own

    def mid_epoch(self) -> bool:
        """True while a training pass of a run is under way."""
        return self.training_pass_active and self.running_state is not None

    def progress(self, trial_state: Mapping) -> dict:
        """Where training stands: at an epoch boundary (``batch`` -1) or inside a training pass, which is
        also where a loaded mid-epoch checkpoint stands until a run resumes it."""
        if self.mid_epoch():
            return {"epoch": self.running_state[EPOCH], "batch": self.running_state[BATCH]}
        if self._resume_point is not None:
            return {"epoch": self._resume_point["epoch"], "batch": self._resume_point["batch"]}
        if self._pending is not None and self._pending[0]["batch"] >= 0:
            return dict(self._pending[0])
        return {"epoch": len(trial_state[HISTORY]), "batch": -1}

    def _loaded_own_state(self) -> dict | None:
        """This rank's part of a loaded checkpoint that no run has restored yet, or None."""
        if self._resume_point is not None:  # a run has started but not yet reached the saved batch
            return {key: value for key, value in self._resume_point.items() if key not in ("epoch", "batch")}
        if self._pending is None:
            return None
        _, state_dict, single = self._pending
        return distributed.own_state(state_dict, single)

    # ----------------------------------------------------------------------------------- loading
    def load_state_dict(self, trial_state: Mapping, state_dict: dict, resume: bool = True, **kwargs: Any) -> None:
        """Load a Trial state dict (all of it with ``resume``, else the model only) or a bare model state dict.

        The metric and random state is kept until the next run starts (:meth:`apply_pending`).

        Raises:
            StateDictError: the dict matches neither a Trial nor the model (missing and unexpected keys named).
        """
        model = unwrap_model(trial_state[MODEL])
        if MODEL not in state_dict:
            warnings.warn("Not a torchbearer state dict, passing to model", stacklevel=3)
            load_model(model, state_dict, **kwargs)
            return
        if not resume:
            load_model(model, state_dict[MODEL], **kwargs)
            return
        if VERSION in state_dict and release(str(state_dict[VERSION])) != release(__version__):
            warnings.warn(
                "This state dict was saved with a different torchbearer version, loading available keys. "
                "Consider setting resume=False",
                stacklevel=3,
            )
        load_model(model, state_dict[MODEL], **kwargs)
        if OPTIMIZER in state_dict:
            distributed.load_optimizer_state_dict(trial_state, state_dict[OPTIMIZER])
        if HISTORY in state_dict:
            trial_state[HISTORY][:] = [dict(record) for record in state_dict[HISTORY]]
        if CALLBACK_LIST in state_dict:
            trial_state[CALLBACK_LIST].load_state_dict(state_dict[CALLBACK_LIST])
        if GRAD_SCALER in state_dict and trial_state[GRAD_SCALER] is not None:
            trial_state[GRAD_SCALER].load_state_dict(state_dict[GRAD_SCALER])
        self._remember(state_dict)

    def _remember(self, state_dict: dict) -> None:
        """Keep the metric and RNG state to restore when the next run starts (each rank then knows its own)."""
        single = {key: state_dict[key] for key in (str(METRIC_LIST), "rng", "epoch_start_rng") if key in state_dict}
        self._pending = (state_dict.get("progress", {"epoch": 0, "batch": -1}), state_dict, single)

    def apply_pending(self, trial_state: Mapping) -> None:
        """Restore this rank's metric and RNG state from a loaded checkpoint: now at an epoch boundary,
        at the start of the interrupted epoch's training pass when it was saved mid-epoch."""
        if self._pending is None:
            return
        progress, state_dict, single = self._pending
        self._pending = None
        own = distributed.own_state(state_dict, single)
        if own is None:
            warnings.warn(
                "this checkpoint holds no metric or random state for this rank (it was saved with fewer ranks): the "
                "rank resumes with fresh running metrics and its own random streams",
                stacklevel=4,
            )
            return
        if progress["batch"] < 0:
            if str(METRIC_LIST) in own:
                trial_state[METRIC_LIST].load_state_dict(own[str(METRIC_LIST)])
            if "rng" in own:
                rng.set_state(own["rng"])
            return
        self._resume_point = {"epoch": progress["epoch"], "batch": progress["batch"], **own}

    def start_training_iterator(self, state: dict, new_iterator: Callable[[], Any]) -> int:
        """Create the epoch's training iterator with ``new_iterator()``; when resuming mid-epoch, replay it to the
        saved batch.

        Returns:
            The first batch index to train on (0 unless resuming mid-epoch).
        """
        resume, self._resume_point = self._resume_point, None
        if resume is not None and resume["epoch"] != state[EPOCH]:
            resume = None
        if resume is not None:
            rng.set_state(resume["epoch_start_rng"])  # the same shuffle as the interrupted epoch
            warn_if_order_not_reproducible(state[GENERATOR])
        self._epoch_start_rng = rng.get_state()
        state[ITERATOR] = new_iterator()
        if resume is None:
            return 0
        for _ in range(resume["batch"] + 1):  # batches trained before the interruption
            state[SAMPLER](state)
        rng.set_state(resume["rng"])
        metric_list = state[METRIC_LIST]
        metric_list.train()
        metric_list.reset(state)
        metric_list.load_state_dict(resume[str(METRIC_LIST)])
        return resume["batch"] + 1


def warn_if_order_not_reproducible(generator: Any) -> None:
    """Mid-epoch resume replays the loader; that is exact only for map-style data in a fixed order per seed."""
    dataset = getattr(generator, "dataset", generator)
    if generator is None or isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
        warnings.warn(
            f"resuming mid-epoch replays the training loader ({type(generator).__name__}) up to the saved batch; the "
            "batch order is only reproduced exactly for map-style datasets with PyTorch's default samplers (or "
            "DistributedSampler). Save checkpoints at epoch ends for other loaders",
            stacklevel=5,
        )


def release(version: str) -> str:
    """The version without a development suffix (``1.0.0.dev0`` -> ``1.0.0``)."""
    return re.sub(r"\.dev\d*$", "", version)


def load_model(model: torch.nn.Module, model_state: dict, **kwargs: Any) -> None:
    """Load ``model_state`` into ``model`` (sharded or not).

    Raises:
        StateDictError: the state dict does not fit the model; the message opens with what does not fit (size
            mismatches, missing and unexpected keys).
    """
    try:
        if not distributed.load_model_state_dict(model, model_state, **kwargs):
            model.load_state_dict(model_state, **kwargs)
    except RuntimeError as error:
        strict = kwargs.get("strict", True)
        mismatches = _mismatches(model.state_dict(), model_state, strict)
        found = "; ".join(mismatches) if mismatches else str(error).rstrip(".")
        fix = "or pass strict=False to load the keys that match" if strict else "strict=False skips no mismatched size"
        raise StateDictError(
            f"the state dict does not fit the model {type(model).__name__}: {found}. Load a checkpoint saved from the "
            f"same architecture ({fix})"
        ) from error


def _mismatches(expected: Mapping, given: Mapping, strict: bool) -> list[str]:
    """What keeps ``given`` from loading into a model whose state dict is ``expected`` (error path only)."""
    found = [
        f"size mismatch for {key}: {_shape(given[key])} in the state dict, {_shape(expected[key])} in the model"
        for key in expected
        if key in given and _shape(given[key]) != _shape(expected[key])
    ]
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    keys = [f"{kind} keys {names}" for kind, names in (("missing", missing), ("unexpected", unexpected)) if names]
    if strict and keys:
        found.append(", ".join(keys))
    return found


def _shape(value: Any) -> tuple | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)
