"""Checkpoints of a distributed Trial: model and optimizer state dicts, per-rank state, saving and loading.

A full checkpoint is one file written by rank zero while the other ranks wait at a barrier; an FSDP
model with ``state_dict_type='sharded'`` is saved as a folder, each rank writing its shard into a new
version that becomes current only once complete (in the background with ``async_save``). Either loads
on any number of ranks or in one process (:func:`load_checkpoint`). What only one rank can
restore (its random generators, its metrics' partial sums) is gathered into the Trial state dict in
rank order (:func:`per_rank_states`) and picked out again on loading (:func:`own_state`).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import torch
from torch import distributed as dist

from torchbearer.devices import unwrap_model
from torchbearer.distributed.preparation import prepare
from torchbearer.distributed.process_group import barrier, get_rank, is_rank_zero
from torchbearer.distributed.reduction import cross_rank
from torchbearer.distributed.settings import DistributedSettings, settings_of
from torchbearer.distributed.wrapping import is_fsdp_model, optimizer_names, parameter_names, renumbered
from torchbearer.io import atomic_save, atomic_write_text, safe_load
from torchbearer.state import MODEL, OPTIMIZER

TRIAL_FILE = "trial.pt"
"""Inside a sharded checkpoint's version folder: everything but the model and optimizer, written by rank zero."""

CURRENT_FILE = "current"
"""Inside a sharded checkpoint folder: the name of its complete version folder (replaced atomically)."""

PER_RANK_KEY = "per_rank"
"""Trial state dict key of what each rank resumes on its own (a list in rank order), in a distributed Trial."""


def per_rank_states(state: Mapping, own: dict) -> dict:
    """``{PER_RANK_KEY: [rank 0's own state, rank 1's, ...]}`` in a distributed Trial, else ``{}``; a collective.

    ``own`` is what only this rank can restore: its generator states (dropout masks, augmentations) and
    its metrics' partial sums.
    """
    ranks = cross_rank(state)
    return {} if ranks is None else {PER_RANK_KEY: ranks.gather(own)}


def own_state(state_dict: Mapping, single: dict) -> dict | None:
    """This rank's part of a Trial state dict: its entry of :data:`PER_RANK_KEY`, else ``single`` on rank zero.

    Returns ``None`` when the checkpoint holds nothing for this rank (saved with fewer ranks).
    """
    rank = get_rank()
    per_rank = state_dict.get(PER_RANK_KEY)
    if per_rank is not None:
        return per_rank[rank] if rank < len(per_rank) else None
    return single if rank == 0 else None


def _positional_optimizer_state(optimizer_state: dict) -> dict:
    """A name-keyed optimizer state dict (as FSDP gives) keyed by positions, as ``Optimizer.state_dict`` is."""
    order = [name for group in optimizer_state["param_groups"] for name in group["params"]]
    return renumbered(optimizer_state, {name: position for position, name in enumerate(order)})


def _gather_options(full: bool) -> Any:
    """Full state dicts are gathered to rank zero's CPU memory; sharded ones stay where they are."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full)


def model_state_dict(state: Mapping, **kwargs: Any) -> dict:
    """The model's state dict without ``module.`` or ``_orig_mod.`` prefixes.

    An FSDP model gathers its full state on rank zero (other ranks get ``{}``), or returns its shards
    with ``state_dict_type='sharded'``; either way every rank must call it.
    """
    model = state[MODEL]
    if not is_fsdp_model(model):
        return unwrap_model(model).state_dict(**kwargs)
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    settings = settings_of(state)
    return get_model_state_dict(unwrap_model(model), options=_gather_options(not settings.is_sharded()))


def optimizer_state_dict(state: Mapping) -> dict:
    """The optimizer's state dict; for an FSDP model gathered like :func:`model_state_dict`.

    A full state dict is keyed by positions like ``Optimizer.state_dict()``, so it loads into a
    single-process Trial.
    """
    optimizer, model = state[OPTIMIZER], state[MODEL]
    if not is_fsdp_model(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    sharded = settings_of(state).is_sharded()
    named = get_optimizer_state_dict(unwrap_model(model), optimizer, options=_gather_options(not sharded))
    if sharded or not named:
        return named
    return _positional_optimizer_state(named)


def load_model_state_dict(model: Any, model_state: dict, strict: bool = True) -> bool:
    """Load ``model_state`` (full or sharded) into an FSDP model; every rank must call it.

    Returns:
        False when the model is not sharded with FSDP (load it the usual way), True once loaded.
    """
    if not is_fsdp_model(model):
        return False
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=not _holds_dtensors(model_state), strict=strict)
    set_model_state_dict(unwrap_model(model), model_state, options=options)
    return True


def load_optimizer_state_dict(state: Mapping, optimizer_state: dict) -> None:
    """Load an optimizer state dict saved by :func:`optimizer_state_dict` (any strategy, any world size)."""
    optimizer, model = state[OPTIMIZER], state[MODEL]
    if not is_fsdp_model(model):
        optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    full = not _holds_dtensors(optimizer_state)
    if full and all(isinstance(key, int) for key in optimizer_state.get("state", {})):
        names = optimizer_names(optimizer, parameter_names(unwrap_model(model)))
        optimizer_state = renumbered(optimizer_state, dict(enumerate(names)))
    options = StateDictOptions(full_state_dict=full)
    set_optimizer_state_dict(unwrap_model(model), optimizer, optimizer_state, options=options)


def _holds_dtensors(value: Any) -> bool:
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return True
    if isinstance(value, Mapping):
        return any(_holds_dtensors(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_dtensors(item) for item in value)
    return False


def save_checkpoint(
    content: dict,
    path: str,
    state: Mapping,
    pickle_module: Any = torch.serialization.pickle,
    pickle_protocol: int = torch.serialization.DEFAULT_PROTOCOL,
    blocking: bool = False,
) -> None:
    """Write a checkpoint once for all ranks; every rank must call it, and all return once it is complete.

    A full state dict is written atomically by rank zero to the file ``path``. A sharded one (FSDP with
    ``state_dict_type='sharded'``) becomes the folder ``path``: each save goes to a new version folder
    inside it, the model and optimizer shards through ``torch.distributed.checkpoint``, the rest of a Trial
    state dict in ``trial.pt``; only once every rank has written its shards does ``path/current`` name the
    new version (and older versions are deleted), so a crash mid-save leaves the previous checkpoint in
    place. With ``with_distributed(async_save=True)`` the shards are written in the background and this
    returns at once (unless ``blocking``); the next save, a removal or a load waits for it first. Read either
    kind back with :func:`load_checkpoint`.
    """
    settings = settings_of(state)
    if settings is not None and settings.is_sharded() and _holds_dtensors(content):
        _save_sharded(content, path, settings, pickle_module, pickle_protocol, blocking)
        return
    if is_rank_zero():
        atomic_save(content, path, pickle_module, pickle_protocol)
    barrier(state)


def _save_sharded(
    content: dict, path: str, settings: Any, pickle_module: Any, pickle_protocol: int, blocking: bool
) -> None:
    import torch.distributed.checkpoint as dcp

    wait_for_checkpoint(settings)
    is_trial = str(MODEL) in content  # else the bare model's state dict
    shards = {key: content[key] for key in (str(MODEL), str(OPTIMIZER)) if key in content} if is_trial else content
    version = _agreed_version_name(settings)
    folder = os.path.join(path, version)
    if is_rank_zero():
        if os.path.isfile(path):
            os.remove(path)
        os.makedirs(folder, exist_ok=True)
        _remove_versions(path, keep=(_current_version(path), version))  # left by a save that crashed
        if is_trial:  # small, and written now: later it may have changed
            rest = {key: value for key, value in content.items() if key not in shards}
            atomic_save(rest, os.path.join(folder, TRIAL_FILE), pickle_module, pickle_protocol)
    if not settings.async_save or blocking:
        dcp.save(shards, checkpoint_id=folder)
        if is_rank_zero():
            _make_current(path, version)
        dist.barrier(group=settings.cpu_group)  # every rank returns once the new version is current
        return
    # The shards are copied to CPU memory here; a background thread writes them on a group of its own.
    written = dcp.async_save(shards, checkpoint_id=folder, process_group=settings.checkpoint_group)
    # Rank zero's write ends after every rank's (it writes the metadata last), so it then makes it current.
    settings.pending_save = BackgroundSave(
        written, functools.partial(_make_current, path, version) if is_rank_zero() else None
    )


class BackgroundSave:
    """A sharded checkpoint being written in the background (``async_save``).

    Args:
        written: The future of ``torch.distributed.checkpoint.async_save``.
        when_complete: Called (in the writing thread) once the write succeeded: on rank zero, making the new
            version current.
    """

    def __init__(self, written: Future, when_complete: Callable[[], None] | None) -> None:
        self._written, self._when_complete = written, when_complete
        self._finished = threading.Event()
        self._error: BaseException | None = None
        written.add_done_callback(self._finish)

    def _finish(self, written: Future) -> None:
        try:
            if written.exception() is None and self._when_complete is not None:
                self._when_complete()
        except BaseException as error:  # kept for wait(), which raises it in the training thread
            self._error = error
        finally:
            self._finished.set()

    def done(self) -> bool:
        """True once the write (and, on rank zero, making it current) has finished."""
        return self._finished.is_set()

    def wait(self) -> None:
        """Block until finished; raise the write's error, if any."""
        self._finished.wait()
        self._written.result()
        if self._error is not None:
            raise self._error


def wait_for_checkpoint(settings_or_state: Any) -> None:
    """Wait until the checkpoint being written in the background (``async_save``), if any, is complete.

    Call it on every rank (the checkpointers, ``load_checkpoint`` and the next save do): all return once
    the new version is current.

    Args:
        settings_or_state: The Trial's state or its :class:`DistributedSettings`.

    Raises:
        Exception: The background write failed (its error).
    """
    settings = settings_or_state if isinstance(settings_or_state, DistributedSettings) else None
    if settings is None and isinstance(settings_or_state, Mapping):
        settings = settings_of(settings_or_state)
    if settings is None or settings.pending_save is None:
        return
    pending, settings.pending_save = settings.pending_save, None
    pending.wait()
    if settings.active:  # rank zero has made it current: every rank now reads the new one
        dist.barrier(group=settings.cpu_group)


def _agreed_version_name(settings: Any) -> str:
    """A new version folder name, rank zero's, on every rank."""
    name = [secrets.token_hex(6)]
    dist.broadcast_object_list(name, src=0, group=settings.cpu_group)
    return f"version-{name[0]}"


def _current_version(path: str) -> str | None:
    """The name of the complete version of the sharded checkpoint ``path`` (``None``: not versioned)."""
    try:
        with open(os.path.join(path, CURRENT_FILE), encoding="utf-8") as file:
            return file.read().strip()
    except FileNotFoundError:
        return None


def _make_current(path: str, version: str) -> None:
    """Point the checkpoint at its new, complete version, then delete the others (rank zero)."""
    atomic_write_text(version, os.path.join(path, CURRENT_FILE))
    _remove_versions(path, keep=(version,))


def _remove_versions(path: str, keep: tuple) -> None:
    for entry in os.scandir(path):
        if entry.is_dir() and entry.name.startswith("version-") and entry.name not in keep:
            shutil.rmtree(entry.path, ignore_errors=True)


def checkpoint_folder(path: str) -> str:
    """Where a sharded checkpoint's files are: its current version, or ``path`` itself if it has no versions."""
    version = _current_version(path)
    return path if version is None else os.path.join(path, version)


def remove_checkpoint(path: str, state: Mapping) -> None:
    """Delete a checkpoint file or sharded folder, on rank zero only (once a background save is complete).

    Raises:
        OSError: It could not be deleted.
    """
    wait_for_checkpoint(state)
    if not is_rank_zero():
        return
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def load_checkpoint(trial: Any, path: str, resume: bool = True, map_location: Any = "cpu") -> Any:
    """Load a checkpoint written by the checkpointers into ``trial``, on any number of ranks.

    A file is read on every rank (with :func:`torchbearer.io.safe_load`). A sharded folder is read
    through ``torch.distributed.checkpoint`` into the Trial's model and optimizer, sharded (FSDP, on
    any number of ranks) or not (a single process).

    Args:
        trial: The Trial to load into; call it on every rank.
        path: The checkpoint file or folder.
        resume: Load everything (``True``) or the model only (``False``), as ``Trial.load_state_dict``.
        map_location: Where tensors of a file checkpoint are loaded.

    Returns:
        ``trial``.

    Example:
        >>> load_checkpoint(trial, 'checkpoints/model.03.pt').run(10)  # doctest: +SKIP
    """
    wait_for_checkpoint(trial.state)
    if not os.path.isdir(path):
        return trial.load_state_dict(safe_load(path, map_location=map_location), resume=resume)
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    prepare(trial)  # shard the model first, so each rank reads only its shards
    model = unwrap_model(trial.state[MODEL])
    path = checkpoint_folder(path)
    trial_file = os.path.join(path, TRIAL_FILE)
    if not os.path.isfile(trial_file):  # the bare model's state dict
        template = model_state_dict(trial.state)
        _read_shards(template, path)
        return trial.load_state_dict({str(MODEL): template}, resume=False)
    template = {str(MODEL): model_state_dict(trial.state)}
    if resume:
        template[str(OPTIMIZER)] = get_optimizer_state_dict(model, trial.state[OPTIMIZER])
    _read_shards(template, path)
    content = {**safe_load(trial_file, map_location=map_location), **template}
    if resume:  # keyed by parameter names, which set_optimizer_state_dict reads for any model
        set_optimizer_state_dict(model, trial.state[OPTIMIZER], content.pop(str(OPTIMIZER)))
    return trial.load_state_dict(content, resume=resume)


def _read_shards(template: dict, path: str) -> None:
    """Fill ``template`` in place from a ``torch.distributed.checkpoint`` folder (in one process too)."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # one process reading a sharded checkpoint is intended here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(template, checkpoint_id=path)
