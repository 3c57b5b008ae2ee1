"""What a Trial does at the start of ``run``, ``evaluate`` and ``predict`` to scale out: :func:`prepare`.

It ties the other modules together: start the process group, place and wrap the model, split the
loaders. It does nothing in a single process unless a launcher or an initialised group says otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import distributed as dist

from torchbearer.distributed.process_group import init_process_group, make_cpu_group, wanted_world_size
from torchbearer.distributed.samplers import distribute_loaders
from torchbearer.distributed.settings import DISTRIBUTED, DistributedSettings
from torchbearer.distributed.wrapping import place_on_rank_device, wrap_model
from torchbearer.state import DEVICE


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
    if wanted_world_size(settings) <= 1:
        return settings
    if not settings.active:
        init_process_group(settings, torch.device(state[DEVICE]).type)
        settings.cpu_group = make_cpu_group()
        if settings.async_save:  # background writes must not share a group with training's collectives
            settings.checkpoint_group = dist.new_group(backend="gloo")
        place_on_rank_device(trial, settings)
        wrap_model(state, settings)
        settings.active = True
    distribute_loaders(trial, settings)
    return settings
