import torch
from torch import nn

from torchbearer.callbacks.lsuv import LSUV


def _conv_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )  # fmt: skip


def _output_stds(model, data):
    """Each Linear/Conv layer's output std on ``data``, measured with forward hooks."""
    stds = []
    hooks = [
        layer.register_forward_hook(lambda module, inputs, output: stds.append(output.std().item()))
        for layer in model.modules()
        if isinstance(layer, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(data)
    for hook in hooks:
        hook.remove()
    return stds


def test_lsuv_brings_every_layer_output_std_within_tolerance():
    model, data = _conv_model(), torch.randn(32, 3, 8, 8) * 4 + 2
    LSUV().init_model(model, data, needed_std=1.0, std_tol=0.1)
    stds = _output_stds(model, data)
    assert len(stds) == 3
    assert all(abs(std - 1.0) <= 0.1 for std in stds), stds


def test_lsuv_returns_the_same_model_in_its_original_mode():
    model, data = _conv_model(), torch.randn(8, 3, 8, 8)
    assert LSUV().init_model(model, data) is model
    assert model.training
    model.eval()
    LSUV().init_model(model, data)
    assert not model.training


def test_lsuv_runs_the_model_in_eval_mode():
    modes = []
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    model[1].register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    LSUV().init_model(model, torch.randn(16, 4))
    assert modes and not any(modes)


def test_lsuv_orthonormal_pre_init_without_rescaling():
    model = nn.Sequential(nn.Linear(10, 6))
    LSUV().init_model(model, torch.randn(4, 10), max_attempts=0)
    weight = model[0].weight
    assert torch.allclose(weight @ weight.T, torch.eye(6), atol=1e-5)


def test_lsuv_rescales_the_tensor_chosen_by_weight_lambda():
    model = nn.Sequential(nn.Linear(5, 5))
    before = model[0].weight.clone()
    seen = []

    def weight_of(layer):
        seen.append(layer)
        return layer.weight

    LSUV().init_model(model, torch.randn(16, 5), weight_lambda=weight_of, do_orthonorm=False, std_tol=0.01)
    assert seen == [model[0]]
    scale = (model[0].weight * before).sum() / (before * before).sum()
    assert not torch.allclose(scale, torch.tensor(1.0))
    assert torch.allclose(model[0].weight, scale * before, atol=1e-6)
