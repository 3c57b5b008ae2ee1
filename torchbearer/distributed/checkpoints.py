"""Checkpoints of a distributed Trial: model and optimizer state dicts, per-rank state, saving and loading.

A full checkpoint is one file written by rank zero while the other ranks wait at a barrier; an FSDP
model with ``state_dict_type='sharded'`` is saved as a folder, each rank writing its shard. Either
loads on any number of ranks or in one process (:func:`load_checkpoint`). What only one rank can
restore (its random generators, its metrics' partial sums) is gathered into the Trial state dict in
rank order (:func:`per_rank_states`) and picked out again on loading (:func:`own_state`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from torchbearer.devices import unwrap_model
from torchbearer.distributed.preparation import prepare
from torchbearer.distributed.process_group import barrier, get_rank, is_rank_zero
from torchbearer.distributed.reduction import cross_rank
from torchbearer.distributed.settings import settings_of
from torchbearer.distributed.wrapping import is_fsdp_model, optimizer_names, parameter_names, renumbered
from torchbearer.io import atomic_save, safe_load
from torchbearer.state import MODEL, OPTIMIZER

TRIAL_FILE = "trial.pt"
"""Inside a sharded checkpoint folder: everything but the model and optimizer, written by rank zero."""

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
) -> None:
    """Write a checkpoint once for all ranks; every rank must call it, and all return once it is complete.

    A full state dict is written atomically by rank zero to the file ``path``. A sharded one (FSDP with
    ``state_dict_type='sharded'``) becomes the folder ``path``: the model and optimizer shards through
    ``torch.distributed.checkpoint``, the rest of a Trial state dict in ``path/trial.pt``. Read either
    back with :func:`load_checkpoint`.
    """
    settings = settings_of(state)
    if settings is not None and settings.is_sharded() and _holds_dtensors(content):
        _save_sharded(content, path, pickle_module, pickle_protocol)
    elif is_rank_zero():
        atomic_save(content, path, pickle_module, pickle_protocol)
    barrier(state)


def _save_sharded(content: dict, path: str, pickle_module: Any, pickle_protocol: int) -> None:
    import torch.distributed.checkpoint as dcp

    is_trial = str(MODEL) in content  # else the bare model's state dict
    shards = {key: content[key] for key in (str(MODEL), str(OPTIMIZER)) if key in content} if is_trial else content
    if is_rank_zero() and os.path.isfile(path):
        os.remove(path)
    dcp.save(shards, checkpoint_id=path)
    if is_trial and is_rank_zero():
        rest = {key: value for key, value in content.items() if key not in shards}
        atomic_save(rest, os.path.join(path, TRIAL_FILE), pickle_module, pickle_protocol)


def remove_checkpoint(path: str, state: Mapping) -> None:
    """Delete a checkpoint file or sharded folder, on rank zero only.

    Raises:
        OSError: It could not be deleted.
    """
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
    if not os.path.isdir(path):
        return trial.load_state_dict(safe_load(path, map_location=map_location), resume=resume)
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    prepare(trial)  # shard the model first, so each rank reads only its shards
    model = unwrap_model(trial.state[MODEL])
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
