"""The process group: detecting ``torchrun``, starting and ending the group, ranks, and whole-group agreement.

Everything here works without a process group too (rank 0 of a world of 1), so callers need not ask
first. Besides the default group the Trial keeps a CPU (gloo) group for small end-of-pass values
(:attr:`DistributedSettings.cpu_group`), so that agreeing to stop or waiting at a barrier never waits
for the device.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import distributed as dist

from torchbearer.distributed.elastic import round_store
from torchbearer.distributed.settings import PREEMPTION, DistributedSettings, settings_of
from torchbearer.state import STOP_TRAINING


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


def wanted_world_size(settings: DistributedSettings) -> int:
    """How many processes the Trial runs on: the group's or torchrun's world size, 1 when switched off or alone."""
    if settings.enabled is False:
        return 1
    if is_initialized():
        return get_world_size()
    environment = launch_environment()
    return environment[1] if environment is not None else 1


def init_process_group(settings: DistributedSettings, device_type: str) -> None:
    """Start the default process group (unless one is running) with the settings' backend and timeout.

    Under ``torchrun`` the group's keys go under a prefix that is new for every restart of the workers
    (:func:`torchbearer.distributed.elastic.round_store`), so a restarted group never reads the addresses
    of the workers it replaces. It is destroyed when the interpreter exits.
    """
    if is_initialized():
        return
    if device_type == "cuda":
        torch.cuda.set_device(rank_cuda_device())
    backend = settings.backend or ("cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo")
    timeout = datetime.timedelta(seconds=settings.timeout)
    fresh = round_store(settings.timeout)  # under torchrun: keys no earlier (dead) group of the job wrote
    if fresh is None:
        dist.init_process_group(backend, timeout=timeout)
    else:
        store, rank, world_size = fresh
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    atexit.register(_destroy_process_group)


EXIT_GRACE_SECONDS = 0.1
"""How long the interpreter waits at exit, before it finalises, for gloo's threads to let go of their last work."""


def _destroy_process_group() -> None:
    """At exit: let gloo's worker threads finish, then destroy the group.

    A gloo worker thread that drops the last reference to a finished collective's work releases its
    tensors, and a tensor Python also held needs the GIL to be let go. If that happens while the
    interpreter finalises, CPython ends the thread inside a C++ destructor and the process aborts
    ("terminate called without an active exception", SIGABRT): a job that trained to the end fails at
    exit, about one worker in three when the model (DDP) keeps the group alive. Sleeping here releases
    the GIL while the interpreter is still whole; in tests this took the aborts from 7 of 15 and 9 of 12
    jobs to none of 12. The group itself is usually kept alive by the model, so destroying it frees little.
    """
    if is_initialized():
        time.sleep(EXIT_GRACE_SECONDS)
        dist.destroy_process_group()


def make_cpu_group() -> Any:
    """A group for collectives on CPU tensors: the default one if it speaks gloo, else a new gloo group."""
    return None if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo")


def rank_cuda_device() -> torch.device:
    """``cuda:LOCAL_RANK`` (modulo the visible GPUs) under torchrun, else the current CUDA device."""
    environment = launch_environment()
    if environment is None:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda", environment[2] % torch.cuda.device_count())


def stop_agreement(state: Mapping) -> Callable[[dict], bool] | None:
    """For a distributed or preemptible Trial, the check after every training batch whether to stop.

    Under torchrun it stops every rank's training pass when any rank sets ``STOP_TRAINING``: a rank leaving
    the training loop alone would leave the others waiting in their next gradient all-reduce until the
    timeout. The flags are all-reduced as CPU values on the CPU group, so the check never waits for the
    device. With ``Trial.with_preemption`` the same all-reduce carries whether any rank received SIGTERM;
    then every rank writes the preemption checkpoint at this step and raises ``Preempted``
    (:mod:`torchbearer.distributed.preemption`). ``None`` for a single process without preemption, where
    the loop reads the flag itself.
    """
    settings = settings_of(state)
    distributed = settings is not None and settings.active
    preemption = state.get(PREEMPTION) if hasattr(state, "get") else None
    if preemption is not None and not preemption.armed:
        preemption = None
    if not distributed and preemption is None:
        return None
    group = settings.cpu_group if distributed else None
    return functools.partial(_agree_to_stop, group=group, distributed=distributed, preemption=preemption)


def agree_to_stop(state: dict) -> bool:
    """Whether any rank set ``STOP_TRAINING`` (each rank's flag is then set); one process reads its own flag.

    A preemption signal received by any rank is acted on here (see :func:`stop_agreement`).
    """
    agreement = stop_agreement(state)
    return bool(state[STOP_TRAINING]) if agreement is None else agreement(state)


def _agree_to_stop(state: dict, group: Any, distributed: bool, preemption: Any) -> bool:
    stop, preempted = bool(state[STOP_TRAINING]), preemption is not None and preemption.received is not None
    if distributed:
        flags = torch.tensor([int(stop), int(preempted)])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
        stop, preempted = (bool(flag) for flag in flags.tolist())
    state[STOP_TRAINING] = stop
    if preempted and preemption is not None:
        preemption.act_if_resumable(state)  # writes the checkpoint and raises Preempted where it resumes exactly
    return stop


def barrier(state: Mapping) -> None:
    """Wait for every rank of a distributed Trial (nothing otherwise)."""
    settings = settings_of(state)
    if settings is not None and settings.active:
        dist.barrier(group=settings.cpu_group)
