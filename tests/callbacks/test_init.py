import math

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer.callbacks import init


def _initialised(callback, model):
    callback.on_init({torchbearer.MODEL: model})
    return model


@pytest.mark.parametrize("initialiser", [init.KaimingNormal, init.KaimingUniform])
def test_kaiming_weight_std_matches_he_for_relu(initialiser):
    layer = _initialised(initialiser(nonlinearity="relu"), nn.Linear(1000, 800))
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)


def test_kaiming_fan_out_mode_and_leaky_slope_change_the_std():
    layer = _initialised(init.KaimingNormal(a=0.5, mode="fan_out"), nn.Linear(500, 1000))
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (1 + 0.25)) / math.sqrt(1000), rel=0.02)


@pytest.mark.parametrize("initialiser", [init.XavierNormal, init.XavierUniform])
def test_xavier_weight_std_matches_glorot(initialiser):
    layer = _initialised(initialiser(gain=2.0), nn.Linear(600, 1000))
    assert layer.weight.std().item() == pytest.approx(2.0 * math.sqrt(2 / 1600), rel=0.02)


def test_weight_init_acts_on_modules_whose_class_name_contains_a_target():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 2, 3), nn.Linear(3, 3), nn.Bilinear(2, 2, 2))
    seen = []
    _initialised(init.WeightInit(lambda module: seen.append(type(module).__name__)), model)
    assert seen == ["Conv2d", "ConvTranspose2d", "Linear", "Bilinear"]
    seen.clear()
    _initialised(init.WeightInit(lambda module: seen.append(type(module).__name__), targets=["Conv"]), model)
    assert seen == ["Conv2d", "ConvTranspose2d"]


def test_weight_init_only_touches_the_given_modules():
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    before = second.weight.clone()
    _initialised(init.XavierNormal(modules=[first]), nn.Sequential(first, second))
    assert torch.equal(second.weight, before)


def test_zero_bias_zeroes_biases_and_skips_layers_without_one():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False), nn.Conv2d(1, 2, 3))
    _initialised(init.ZeroBias(), model)
    assert torch.equal(model[0].bias, torch.zeros(4))
    assert model[1].bias is None
    assert torch.equal(model[2].bias, torch.zeros(2))


def test_weight_initialisers_skip_containers_whose_name_matches():
    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 3)

    model = _initialised(init.KaimingNormal(), ConvNet())
    assert model.layer.weight.shape == (3, 3)


def test_initialisers_run_when_the_trial_is_constructed():
    model = nn.Linear(3, 2)
    torchbearer.Trial(model, callbacks=[init.ZeroBias()])
    assert torch.equal(model.bias, torch.zeros(2))


def test_lsuv_init_gives_each_layer_the_needed_output_std_at_trial_construction():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    data = torch.randn(64, 20) * 5
    torchbearer.Trial(model, callbacks=[init.ZeroBias(), init.LsuvInit(data, needed_std=0.5, std_tol=0.05)])
    outputs = [model[0](data), model[2](model[1](model[0](data)))]
    for output in outputs:
        assert abs(output.std().item() - 0.5) <= 0.05


def test_literature_initialisers_cite_their_papers():
    assert "he2015delving" in init.KaimingNormal.__doc__ and "he2015delving" in init.KaimingUniform.__doc__
    assert "glorot2010understanding" in init.XavierNormal.__doc__
    assert "glorot2010understanding" in init.XavierUniform.__doc__
    assert "mishkin2016all" in init.LsuvInit.__doc__
