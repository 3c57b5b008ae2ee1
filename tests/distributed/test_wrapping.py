"""``torchbearer.distributed.wrapping`` in one process: what counts as wrapped, and optimizer state renumbering."""

from __future__ import annotations

import torch
from torch import nn

import torchbearer
from torchbearer.distributed import DistributedSettings, is_distributed_model, is_fsdp_model
from torchbearer.distributed.wrapping import optimizer_names, parameter_names, renumbered, wrap_model


def test_plain_and_compiled_models_are_not_distributed_models():
    model = nn.Linear(2, 2)
    assert not is_distributed_model(model) and not is_distributed_model(torch.compile(model))
    assert not is_fsdp_model(model)


def test_a_model_without_trainable_parameters_is_not_wrapped():
    model = nn.Linear(2, 2).requires_grad_(False)
    state = {torchbearer.MODEL: model, torchbearer.OPTIMIZER: None, torchbearer.DEVICE: "cpu"}
    wrap_model(state, DistributedSettings(active=True))
    assert state[torchbearer.MODEL] is model


def test_optimizer_state_renumbered_by_names_and_back_is_unchanged():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(4, 2)).sum().backward()
    optimizer.step()
    names = optimizer_names(optimizer, parameter_names(model))
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    positional = optimizer.state_dict()
    by_name = renumbered(positional, dict(enumerate(names)))
    assert set(by_name["state"]) == set(names) and by_name["param_groups"][0]["params"] == names
    back = renumbered(by_name, {name: position for position, name in enumerate(names)})
    assert back["param_groups"] == positional["param_groups"] and back["state"].keys() == positional["state"].keys()
