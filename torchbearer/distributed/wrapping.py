"""The model of a distributed Trial: placed on the rank's GPU, then wrapped in DDP or sharded with FSDP2.

A model the user already wrapped is left as it is (:func:`is_distributed_model`). The helpers that
map optimizer state between parameter positions and parameter names are here because sharding an
optimizer that already holds state needs them; :mod:`torchbearer.distributed.checkpoints` uses them too.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from torchbearer.devices import unwrap_model, update_device_and_dtype
from torchbearer.distributed.process_group import rank_cuda_device
from torchbearer.distributed.settings import DistributedSettings
from torchbearer.state import DEVICE, MODEL, OPTIMIZER


def place_on_rank_device(trial: Any, settings: DistributedSettings) -> None:
    """A CUDA trial uses ``cuda:LOCAL_RANK`` (one GPU per process); a CPU trial stays where it is."""
    device = torch.device(trial.state[DEVICE])
    if device.type != "cuda":
        return
    rank_device = rank_cuda_device()
    if device == rank_device:
        return
    if settings.strategy == "fsdp":  # fully_shard moves each shard to the device; the whole model may not fit
        update_device_and_dtype(trial.state, rank_device)
    else:
        trial.to(rank_device)


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


def wrap_model(state: dict, settings: DistributedSettings) -> None:
    """Wrap the Trial's model in DDP, or shard it in place with FSDP2; a frozen or already wrapped model is kept."""
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
    names = parameter_names(model)
    saved = None
    if getattr(optimizer, "state", None):  # e.g. loaded from a checkpoint before the first run
        saved = renumbered(optimizer.state_dict(), dict(enumerate(optimizer_names(optimizer, names))))
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


def parameter_names(model: torch.nn.Module) -> dict[int, str]:
    """Each parameter's name, keyed by the parameter's ``id``."""
    return {id(parameter): name for name, parameter in model.named_parameters()}


def optimizer_names(optimizer: Any, names: dict[int, str]) -> list[str]:
    """The parameter names (from ``names``, keyed by ``id``) in the order of the optimizer's groups."""
    return [names[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]


def renumbered(optimizer_state: dict, keys: dict) -> dict:
    """The optimizer state dict with every parameter key mapped through ``keys``."""
    groups = [{**group, "params": [keys[key] for key in group["params"]]} for group in optimizer_state["param_groups"]]
    return {"state": {keys[key]: value for key, value in optimizer_state["state"].items()}, "param_groups": groups}
