"""Scaling out on ``torch.distributed``: an unchanged Trial script trains data-parallel under ``torchrun``.

At the start of ``run``, ``evaluate`` and ``predict`` the Trial calls :func:`prepare`. When the script was
launched by ``torchrun`` (or a process group with more than one rank is already initialised) and the
automation is not switched off with ``Trial.with_distributed(False)``, it:

* initialises the process group if needed (``gloo`` on CPU, ``nccl`` for CUDA tensors plus ``gloo`` for
  CPU ones), with a timeout, so a rank that stops answering ends the job instead of hanging it;
* moves a CUDA trial to ``cuda:LOCAL_RANK`` (a CPU trial stays on the CPU);
* wraps the model in ``DistributedDataParallel`` (or shards it with FSDP2's ``fully_shard``); a model the
  user already wrapped is used as it is;
* gives every ``DataLoader`` a sampler for this rank, keeping its batch size (now per rank), shuffling,
  ``drop_last``, ``collate_fn``, workers and ``pin_memory``. Training uses a ``DistributedSampler`` whose
  ``set_epoch`` is called with the epoch at the start of every epoch. Evaluation and prediction give each
  rank a contiguous block of whole batches and never pad, so no sample counts twice.

Metric aggregates (:mod:`torchbearer.metrics.aggregators`, ``EpochLambda``) combine their sums and counts
across ranks at the end of a pass (:func:`cross_rank`), so every rank sees the metrics of the whole data.
Files and printing happen on rank zero (:func:`is_rank_zero`); checkpoints are written by rank zero and the
other ranks wait at a barrier (:func:`save_checkpoint`).
"""

from __future__ import annotations

import atexit
import datetime
import functools
import inspect
import math
import operator
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler, SequentialSampler

from torchbearer.devices import unwrap_model, update_device_and_dtype
from torchbearer.errors import ConfigurationError, TorchbearerWarning
from torchbearer.io import atomic_save, safe_load
from torchbearer.state import (
    DEVICE,
    HISTORY,
    MODEL,
    OPTIMIZER,
    STOP_TRAINING,
    TEST_GENERATOR,
    TEST_STEPS,
    TRAIN_GENERATOR,
    TRAIN_STEPS,
    VALIDATION_GENERATOR,
    VALIDATION_STEPS,
    state_key,
)

DISTRIBUTED = state_key("distributed")
"""State key of the Trial's :class:`DistributedSettings`."""

STRATEGIES = ("ddp", "fsdp")
STATE_DICT_TYPES = ("full", "sharded")
DEFAULT_TIMEOUT = 600.0
"""Seconds a collective may wait for the other ranks before the job fails (``with_distributed(timeout=...)``)."""

TRIAL_FILE = "trial.pt"
"""Inside a sharded checkpoint folder: everything but the model and optimizer, written by rank zero."""


# ----------------------------------------------------------------------------------- ranks
def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """The number of processes in the default process group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def is_rank_zero() -> bool:
    """True unless this process is a rank other than zero of an initialised process group.

    Callbacks that write files or print act only where this is true.
    """
    return get_rank() == 0


def launch_environment() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from the variables ``torchrun`` sets, or ``None`` outside it."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))


# ----------------------------------------------------------------------------------- settings
@dataclass
class DistributedSettings:
    """How a Trial scales out; set with ``Trial.with_distributed``, filled in by :func:`prepare`.

    Attributes:
        enabled: ``None`` (automatic: on under ``torchrun`` or an initialised group of more than one
            rank), ``True`` (the same, stated) or ``False`` (off: the Trial acts as a single process).
        strategy: ``'ddp'`` (DistributedDataParallel) or ``'fsdp'`` (FSDP2 ``fully_shard``).
        backend: Process group backend; ``None`` picks ``gloo`` on CPU and ``cpu:gloo,cuda:nccl`` on CUDA.
        timeout: Seconds a collective waits for the other ranks before failing.
        shard_modules: FSDP: submodule classes sharded as their own units (e.g. transformer blocks).
        state_dict_type: FSDP: ``'full'`` (checkpoints hold the whole model, written by rank zero) or
            ``'sharded'`` (each rank writes its shard with ``torch.distributed.checkpoint``).
        wrapper_kwargs: Passed to ``DistributedDataParallel`` or ``fully_shard``.
        active: Whether the Trial runs distributed (set by :func:`prepare`).
        cpu_group: The process group for end-of-pass values on the CPU (``None``: the default group).
    """

    enabled: bool | None = None
    strategy: str = "ddp"
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    shard_modules: tuple[type, ...] = ()
    state_dict_type: str = "full"
    wrapper_kwargs: dict = field(default_factory=dict)
    active: bool = False
    cpu_group: Any = None

    def is_sharded(self) -> bool:
        """True when checkpoints are written shard by shard (FSDP with ``state_dict_type='sharded'``)."""
        return self.active and self.strategy == "fsdp" and self.state_dict_type == "sharded"


def configure(
    state: dict,
    enabled: bool = True,
    strategy: str = "ddp",
    *,
    backend: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    shard_modules: Sequence[type] = (),
    state_dict_type: str = "full",
    **wrapper_kwargs: Any,
) -> DistributedSettings:
    """Store the distributed settings of a Trial in its ``state`` (what ``Trial.with_distributed`` calls).

    Args:
        state: The Trial's state.
        enabled: ``False`` turns the automation off; ``True`` keeps it on (it still does nothing in a
            single process).
        strategy: ``'ddp'`` or ``'fsdp'``.
        backend: Process group backend, when the Trial initialises the group.
        timeout: Seconds a collective waits for the other ranks before the job fails.
        shard_modules: FSDP: submodule classes to shard as separate units before the whole model.
        state_dict_type: FSDP: ``'full'`` or ``'sharded'`` checkpoints.
        **wrapper_kwargs: Passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``) or
            to ``fully_shard`` (e.g. ``reshard_after_forward=False``).

    Returns:
        The settings stored under :data:`DISTRIBUTED`.

    Raises:
        ConfigurationError: An unknown strategy or state dict type, or a timeout that is not positive.
    """
    if strategy not in STRATEGIES:
        raise ConfigurationError(f"distributed strategy {strategy!r} is unknown; use one of {STRATEGIES}")
    if state_dict_type not in STATE_DICT_TYPES:
        raise ConfigurationError(
            f"state_dict_type {state_dict_type!r} is unknown; use 'full' (one file, written by rank zero) or "
            "'sharded' (one folder, each rank writes its shard)"
        )
    if not timeout > 0:
        raise ConfigurationError(f"the distributed timeout must be a positive number of seconds, got {timeout!r}")
    settings = DistributedSettings(
        enabled=bool(enabled), strategy=strategy, backend=backend, timeout=float(timeout),
        shard_modules=tuple(shard_modules), state_dict_type=state_dict_type, wrapper_kwargs=dict(wrapper_kwargs),
    )  # fmt: skip
    previous = state.get(DISTRIBUTED)
    if previous is not None and previous.active:
        raise ConfigurationError(
            "with_distributed must be called before the first run/evaluate/predict: the model and loaders are "
            "already distributed"
        )
    state[DISTRIBUTED] = settings
    return settings


def settings_of(state: Mapping) -> DistributedSettings | None:
    """The Trial's distributed settings in ``state``, if any."""
    return state.get(DISTRIBUTED) if hasattr(state, "get") else None


def stop_agreement(state: Mapping) -> Callable[[dict], bool] | None:
    """For a distributed Trial, a check that stops every rank's training pass when any rank sets ``STOP_TRAINING``.

    A rank leaving the training loop alone would leave the others waiting in their next gradient
    all-reduce until the timeout. The check all-reduces the flag, a CPU value on the CPU group, so it
    never waits for the device. ``None`` in a single process, where the loop reads the flag itself.
    """
    settings = settings_of(state)
    if settings is None or not settings.active:
        return None
    return functools.partial(_agree_to_stop, group=settings.cpu_group)


def agree_to_stop(state: dict) -> bool:
    """Whether any rank set ``STOP_TRAINING`` (each rank's flag is then set); one process reads its own flag."""
    agreement = stop_agreement(state)
    return bool(state[STOP_TRAINING]) if agreement is None else agreement(state)


def _agree_to_stop(state: dict, group: Any) -> bool:
    flag = torch.tensor([1 if state[STOP_TRAINING] else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    state[STOP_TRAINING] = bool(flag.item())
    return state[STOP_TRAINING]


def _wanted_world_size(settings: DistributedSettings) -> int:
    if settings.enabled is False:
        return 1
    if is_initialized():
        return get_world_size()
    environment = launch_environment()
    return environment[1] if environment is not None else 1


# ----------------------------------------------------------------------------------- set-up
def prepare(trial: Any) -> DistributedSettings:
    """Make the Trial data-parallel if it runs under ``torchrun`` (or in a process group); idempotent.

    Called at the start of ``run``, ``evaluate`` and ``predict`` (by ``torchbearer.trial.inject_printer``).
    Loaders given since the last call are distributed too.

    Returns:
        The settings, with ``active`` telling whether the Trial runs distributed.
    """
    state = trial.state
    settings = state.get(DISTRIBUTED)
    if settings is None:
        settings = state[DISTRIBUTED] = DistributedSettings()
    if _wanted_world_size(settings) <= 1:
        return settings
    if not settings.active:
        _init_process_group(settings, torch.device(state[DEVICE]).type)
        settings.cpu_group = _cpu_group()
        _place_on_rank_device(trial, settings)
        _wrap_model(state, settings)
        settings.active = True
    _distribute_loaders(trial, settings)
    return settings


def _init_process_group(settings: DistributedSettings, device_type: str) -> None:
    if is_initialized():
        return
    if device_type == "cuda":
        torch.cuda.set_device(_rank_cuda_device())
    backend = settings.backend or ("cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=settings.timeout))
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if is_initialized():
        dist.destroy_process_group()


def _cpu_group() -> Any:
    """A group for collectives on CPU tensors: the default one if it speaks gloo, else a new gloo group."""
    return None if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo")


def _place_on_rank_device(trial: Any, settings: DistributedSettings) -> None:
    """A CUDA trial uses ``cuda:LOCAL_RANK`` (one GPU per process); a CPU trial stays where it is."""
    device = torch.device(trial.state[DEVICE])
    if device.type != "cuda":
        return
    rank_device = _rank_cuda_device()
    if device == rank_device:
        return
    if settings.strategy == "fsdp":  # fully_shard moves each shard to the device; the whole model may not fit
        update_device_and_dtype(trial.state, rank_device)
    else:
        trial.to(rank_device)


def _rank_cuda_device() -> torch.device:
    """``cuda:LOCAL_RANK`` (modulo the visible GPUs) under torchrun, else the current CUDA device."""
    environment = launch_environment()
    if environment is None:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda", environment[2] % torch.cuda.device_count())


def _fsdp_classes() -> tuple[type, ...]:
    """The FSDP module classes, or none if FSDP was never imported (no model can be sharded then).

    Importing ``torch.distributed.fsdp`` takes about a second, which a single process should not pay.
    """
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return () if fsdp is None else (fsdp.FSDPModule, fsdp.FullyShardedDataParallel)


def is_distributed_model(model: Any) -> bool:
    """True for a model (or a compiled model) already wrapped in DDP or sharded with FSDP."""
    while True:
        if isinstance(model, (DistributedDataParallel, *_fsdp_classes())):
            return True
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            return False
        model = inner


def _wrap_model(state: dict, settings: DistributedSettings) -> None:
    model = state[MODEL]
    if not isinstance(model, torch.nn.Module) or is_distributed_model(model):
        return
    if not any(parameter.requires_grad for parameter in model.parameters()):
        return
    if settings.strategy == "fsdp":
        _fully_shard(model, state[OPTIMIZER], settings, torch.device(state[DEVICE]).type)
        return
    device = torch.device(state[DEVICE])
    device_ids = [device.index] if device.type == "cuda" else None
    state[MODEL] = _DataParallel(model, device_ids=device_ids, **settings.wrapper_kwargs)


class _DataParallel(DistributedDataParallel):
    """DistributedDataParallel whose evaluation involves no collective per batch.

    Without gradients (validation, ``evaluate``, ``predict``) the bare module runs, so ranks may run
    different numbers of evaluation batches. Switching to evaluation mode copies rank zero's buffers
    (e.g. batch norm statistics) to every rank, so all ranks evaluate the same model.
    """

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self.module(*inputs, **kwargs)
        return super().forward(*inputs, **kwargs)

    def train(self, mode: bool = True) -> _DataParallel:
        if self.training and not mode and self.broadcast_buffers:
            for buffer in self.module.buffers():
                dist.broadcast(buffer, src=0, group=self.process_group)
        return super().train(mode)


# ----------------------------------------------------------------------------------- FSDP
def _fully_shard(model: torch.nn.Module, optimizer: Any, settings: DistributedSettings, device_type: str) -> None:
    """Shard ``model`` in place with FSDP2 and point ``optimizer`` at the sharded parameters.

    Ranks first take rank zero's weights (``fully_shard`` does not broadcast). Optimizer state loaded
    before sharding (a resumed run) is sharded too. The mesh is on the Trial's device type:
    ``fully_shard``'s own default is the GPU whenever one is visible, even for a CPU model.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0, group=settings.cpu_group if tensor.device.type == "cpu" else None)
    names = _parameter_names(model)
    saved = None
    if getattr(optimizer, "state", None):  # e.g. loaded from a checkpoint before the first run
        saved = _renumbered(optimizer.state_dict(), dict(enumerate(_optimizer_names(optimizer, names))))
    options = dict(settings.wrapper_kwargs)
    if "mesh" not in options:
        options["mesh"] = init_device_mesh(device_type, (dist.get_world_size(),))
    units = [module for module in model.modules() if module is not model and isinstance(module, settings.shard_modules)]
    for module in reversed(units):  # innermost first
        fully_shard(module, **options)
    fully_shard(model, **options)
    sharded = dict(model.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [sharded.get(names.get(id(parameter)), parameter) for parameter in group["params"]]
    optimizer.state.clear()
    if saved is not None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, saved, options=StateDictOptions(full_state_dict=True))


def is_fsdp_model(model: Any) -> bool:
    """True for a model sharded with FSDP2 ``fully_shard``."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(unwrap_model(model), fsdp.FSDPModule)


def _parameter_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(parameter): name for name, parameter in model.named_parameters()}


def _optimizer_names(optimizer: Any, names: dict[int, str]) -> list[str]:
    """The parameter names (from ``names``, keyed by ``id``) in the order of the optimizer's groups."""
    return [names[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]


def _renumbered(optimizer_state: dict, keys: dict) -> dict:
    """The optimizer state dict with every parameter key mapped through ``keys``."""
    groups = [{**group, "params": [keys[key] for key in group["params"]]} for group in optimizer_state["param_groups"]]
    return {"state": {keys[key]: value for key, value in optimizer_state["state"].items()}, "param_groups": groups}


def _positional_optimizer_state(optimizer_state: dict) -> dict:
    """A name-keyed optimizer state dict (as FSDP gives) keyed by positions, as ``Optimizer.state_dict`` is."""
    order = [name for group in optimizer_state["param_groups"] for name in group["params"]]
    return _renumbered(optimizer_state, {name: position for position, name in enumerate(order)})


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
        names = _optimizer_names(optimizer, _parameter_names(unwrap_model(model)))
        optimizer_state = _renumbered(optimizer_state, dict(enumerate(names)))
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


# ----------------------------------------------------------------------------------- data
_SHARDED = "_torchbearer_rank_share"
_LOADERS = (
    (TRAIN_GENERATOR, TRAIN_STEPS, "with_train_generator", True),
    (VALIDATION_GENERATOR, VALIDATION_STEPS, "with_val_generator", False),
    (TEST_GENERATOR, TEST_STEPS, "with_test_generator", False),
)


def _distribute_loaders(trial: Any, settings: DistributedSettings) -> None:
    """Replace each of the Trial's DataLoaders with one over this rank's share of its data set."""
    state = trial.state
    for generator_key, steps_key, builder, training in _LOADERS:
        loader = state[generator_key]
        if loader is None or getattr(loader, _SHARDED, False):
            continue
        reason = _unshardable(loader)
        if reason is not None:
            if reason:
                warnings.warn(
                    f"{reason}, so every rank iterates all of it. Give it a DistributedSampler yourself, or use "
                    "with_distributed(False) and split the data per rank",
                    TorchbearerWarning,
                    stacklevel=4,
                )
            continue
        seed = _shared_seed(loader, settings.cpu_group)
        epochs = functools.partial(_epochs_done, trial)
        shared = shard_loader(loader, training, get_rank(), get_world_size(), seed, settings.strategy, epochs)
        steps = state[steps_key]
        if steps == _length(loader):
            steps = len(shared)
        getattr(trial, builder)(shared, steps)


def _epochs_done(trial: Any) -> int:
    return len(trial.state[HISTORY])


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def shard_loader(
    loader: DataLoader,
    training: bool,
    rank: int,
    world_size: int,
    seed: int = 0,
    strategy: str = "ddp",
    epochs: Callable[[], int] = lambda: 0,
) -> DataLoader:
    """A copy of ``loader`` over one rank's share of its data set.

    Args:
        loader: A ``DataLoader`` over a map-style data set with a sequential or random sampler.
        training: Training loaders get an :class:`EpochDistributedSampler` (every rank the same number of
            batches, the last ones padded with repeated samples); evaluation loaders an
            :class:`EvaluationSampler` (DDP) or :class:`EvenBatchSampler` (FSDP), never padded.
        rank: The rank whose share it is.
        world_size: The number of ranks.
        seed: Shuffling seed, equal on every rank.
        strategy: ``'ddp'`` or ``'fsdp'``.
        epochs: Returns the epoch about to run, for ``set_epoch``.

    Returns:
        The new loader, with the same batch size (now per rank), shuffling, ``drop_last``, ``collate_fn``,
        workers and ``pin_memory``.

    Raises:
        ConfigurationError: The loader cannot be split (its reason is given).
    """
    reason = _unshardable(loader)
    if reason is not None:
        raise ConfigurationError(f"{reason or 'the loader is already split per rank'}; it cannot be split per rank")
    shuffle = isinstance(loader.sampler, RandomSampler)
    size = len(loader.dataset)
    if training:
        sampler = EpochDistributedSampler(loader.dataset, world_size, rank, shuffle=shuffle, seed=seed, epochs=epochs)
        return _rebuild(loader, sampler=sampler)
    if strategy == "fsdp":  # every forward gathers the parameters: all ranks need as many batches
        batches = EvenBatchSampler(size, loader.batch_size, world_size, rank, shuffle, seed, loader.drop_last)
        return _rebuild(loader, batch_sampler=batches)
    sampler = EvaluationSampler(size, loader.batch_size, world_size, rank, shuffle, seed, loader.drop_last)
    return _rebuild(loader, sampler=sampler)


def _unshardable(loader: Any) -> str | None:
    """Why ``loader`` cannot be split per rank: ``''`` if it already is, a reason to warn, or None if it can."""
    if not isinstance(loader, DataLoader):
        return f"the generator {type(loader).__name__} is not a torch DataLoader"
    if isinstance(loader.sampler, (DistributedSampler, EvaluationSampler)) or isinstance(
        loader.batch_sampler, EvenBatchSampler
    ):
        return ""
    if isinstance(loader.dataset, IterableDataset):
        return "the DataLoader's dataset is an IterableDataset"
    if loader.batch_size is None:
        return "the DataLoader has a custom batch_sampler"
    if not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        return f"the DataLoader's sampler is a {type(loader.sampler).__name__}"
    return None


def _shared_seed(loader: DataLoader, group: Any) -> int:
    """Rank zero's seed (from the loader's generator, else torch's), so every rank shuffles alike."""
    generator = loader.generator
    seed = generator.initial_seed() if generator is not None else torch.initial_seed()
    value = torch.tensor([seed % (2**63)], dtype=torch.int64)
    dist.broadcast(value, src=0, group=group)
    return int(value.item())


_LOADER_ARGUMENTS = [
    name for name in inspect.signature(DataLoader.__init__).parameters
    if name not in ("self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last")
]  # fmt: skip


def _rebuild(loader: DataLoader, **sampling: Any) -> DataLoader:
    options = {name: getattr(loader, name) for name in _LOADER_ARGUMENTS if hasattr(loader, name)}
    if "batch_sampler" not in sampling:
        options.update(batch_size=loader.batch_size, drop_last=loader.drop_last)
    shared = DataLoader(loader.dataset, **options, **sampling)
    setattr(shared, _SHARDED, True)
    return shared


class EpochDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that calls ``set_epoch`` with the Trial's epoch each time it is iterated.

    Args:
        dataset: The data set.
        num_replicas: The world size.
        rank: This rank.
        shuffle: Reshuffle every epoch (the same permutation on every rank, split between them).
        seed: The shuffling seed, equal on every rank.
        epochs: Returns the number of the epoch about to run.
    """

    def __init__(
        self, dataset: Any, num_replicas: int, rank: int, shuffle: bool, seed: int, epochs: Callable[[], int]
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self._epochs = epochs

    def __iter__(self) -> Iterator[int]:
        self.set_epoch(self._epochs())
        return super().__iter__()


def _order(size: int, shuffle: bool, seed: int) -> list[int]:
    if not shuffle:
        return list(range(size))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(size, generator=generator).tolist()


def _block(count: int, world: int, rank: int) -> tuple[int, int]:
    """This rank's ``[start, stop)`` when ``count`` items are split into ``world`` contiguous blocks."""
    return rank * count // world, (rank + 1) * count // world


class EvaluationSampler(Sampler[int]):
    """This rank's share of a data set for evaluation: a contiguous block of whole batches, never padded.

    The batches are those a single process with the same batch size would make; rank 0 takes the first
    block of them, rank 1 the next, ... So every sample is seen once, per-batch values are the same as in
    one process, and predictions gathered in rank order come in data set order.

    Args:
        size: Number of samples.
        batch_size: Batch size of the loader (per rank).
        num_replicas: The world size.
        rank: This rank.
        shuffle: Permute the samples (the same permutation on every rank) before splitting.
        seed: The permutation's seed.
        drop_last: Leave out the last, incomplete batch (as the loader would).
    """

    def __init__(
        self, size: int, batch_size: int, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False,
    ) -> None:  # fmt: skip
        batches = size // batch_size if drop_last else math.ceil(size / batch_size)
        first, last = _block(batches, num_replicas, rank)
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.start, self.stop = first * batch_size, min(last * batch_size, size)

    def __iter__(self) -> Iterator[int]:
        return iter(_order(self.size, self.shuffle, self.seed)[self.start : self.stop])

    def __len__(self) -> int:
        return self.stop - self.start


class EvenBatchSampler(Sampler[list[int]]):
    """Batches for evaluating a sharded (FSDP) model: every rank gets the same number of batches, no padding.

    Each forward of a sharded model is a collective, so ranks must run equally many. Each rank takes a
    contiguous block of samples (sizes differ by at most one) in ``ceil(batches / world)`` batches of
    nearly equal size, none larger than ``batch_size``. Per-sample values are exact; per-batch averages
    such as the loss average over these batches.

    Args:
        size: Number of samples.
        batch_size: Largest batch.
        num_replicas: The world size.
        rank: This rank.
        shuffle: Permute the samples (the same permutation on every rank) before splitting.
        seed: The permutation's seed.
        drop_last: Leave out the samples of the last, incomplete single-process batch.
    """

    def __init__(
        self, size: int, batch_size: int, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False,
    ) -> None:  # fmt: skip
        kept = size // batch_size * batch_size if drop_last else size
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.start, self.stop = _block(kept, num_replicas, rank)
        self.batches = max(1, math.ceil(math.ceil(kept / batch_size) / num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        indices = _order(self.size, self.shuffle, self.seed)[self.start : self.stop]
        for batch in range(self.batches):
            first, last = _block(len(indices), self.batches, batch)
            yield indices[first:last]

    def __len__(self) -> int:
        return self.batches


# ----------------------------------------------------------------------------------- reductions
class CrossRank:
    """Collectives for end-of-pass values, over a CPU (gloo) group; every rank must call them together."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (tensors moved to the CPU), in rank order."""
        gathered: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(gathered, _to_cpu(value), group=self.group)
        return gathered

    def sum(self, *values: Any) -> tuple[Any, ...]:
        """The element-wise sums over the ranks of ``values`` (numbers or tensors), added in rank order."""
        return tuple(functools.reduce(operator.add, column) for column in zip(*self.gather(values)))


def cross_rank(state: Mapping) -> CrossRank | None:
    """What a metric uses to combine its end-of-pass value across ranks; ``None`` outside a distributed Trial.

    Metrics call it in ``reset(state)`` and keep the result for ``process_final``.
    """
    settings = settings_of(state)
    if settings is None or not settings.active:
        return None
    return CrossRank(settings.cpu_group)


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor (in nested lists, tuples and dicts) moved to the CPU and detached."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    return value


def gather_predictions(predictions: Any, state: Mapping) -> Any:
    """All ranks' predictions in data set order (rank order), on this rank's device.

    A tensor is concatenated along dim 0; a list of per-batch outputs is joined into one list.
    Outside a distributed Trial ``predictions`` is returned unchanged.
    """
    ranks = cross_rank(state)
    if ranks is None:
        return predictions
    parts = [part for part in ranks.gather(predictions) if not (isinstance(part, list) and not part)]
    if parts and all(isinstance(part, torch.Tensor) for part in parts):
        try:
            return torch.cat(parts, 0).to(state[DEVICE])
        except RuntimeError:  # ranks' outputs of different shapes: keep them as a list, as one process would
            pass
    return [item for part in parts for item in (part if isinstance(part, list) else [part])]


# ----------------------------------------------------------------------------------- RNG
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


# ----------------------------------------------------------------------------------- checkpoints
def barrier(state: Mapping) -> None:
    """Wait for every rank of a distributed Trial (nothing otherwise)."""
    settings = settings_of(state)
    if settings is not None and settings.active:
        dist.barrier(group=settings.cpu_group)


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
