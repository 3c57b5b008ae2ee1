"""``Trial.summary`` (``torchbearer.summary``): layers, parameters and output shapes for one batch, by torchinfo."""

import sys

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.errors import ConfigurationError


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))


def _trial(model: nn.Module) -> Trial:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], verbose=0)
    x = torch.randn(40, 4)
    return trial.with_train_data(x, x[:, :3].argmax(1), batch_size=10).with_val_data(x, x[:, :3].argmax(1))


def _layers(statistics) -> list:
    return [(layer.class_name, layer.num_params, layer.output_size) for layer in statistics.summary_list[1:]]


def test_summary_shows_each_layer_s_parameters_and_output_shape_for_the_first_training_batch():
    pytest.importorskip("torchinfo")
    statistics = _trial(_mlp()).summary(verbose=0)
    assert _layers(statistics) == [
        ("Linear", 40, [10, 8]), ("BatchNorm1d", 16, [10, 8]), ("Dropout", 0, [10, 8]), ("Linear", 27, [10, 3]),
    ]  # fmt: skip
    assert statistics.total_params == statistics.trainable_params == 83
    assert "Linear" in str(statistics) and "[10, 3]" in str(statistics)


def _trained(summarise_first: bool) -> tuple:
    torch.manual_seed(1)
    trial = _trial(_mlp())
    if summarise_first:
        trial.summary(verbose=0)
        assert trial.state[torchbearer.MODEL].training
    return trial.run(2), trial.state[torchbearer.MODEL].state_dict()


def test_summary_leaves_the_model_and_the_random_state_as_they_were():
    pytest.importorskip("torchinfo")
    (history, weights), (summarised_history, summarised_weights) = _trained(False), _trained(True)
    assert summarised_history == history  # the same shuffles, dropout masks and batch-norm statistics
    for name, value in weights.items():
        assert torch.equal(summarised_weights[name], value), name


def test_summary_takes_an_input_size_in_the_trial_s_dtype_without_data():
    pytest.importorskip("torchinfo")
    trial = Trial(_mlp(), verbose=0).to(torch.float64)
    statistics = trial.summary(input_size=(2, 4), verbose=0)
    assert _layers(statistics)[-1] == ("Linear", 27, [2, 3])
    assert next(trial.state[torchbearer.MODEL].parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_summary_of_a_cuda_trial_runs_there_and_keeps_its_random_state():
    pytest.importorskip("torchinfo")
    trial = _trial(_mlp()).to("cuda")
    torch.cuda.manual_seed(3)
    cuda_random_state = torch.cuda.get_rng_state()
    statistics = trial.summary(verbose=0)
    assert _layers(statistics)[-1] == ("Linear", 27, [10, 3])
    assert next(trial.state[torchbearer.MODEL].parameters()).is_cuda
    assert torch.equal(torch.cuda.get_rng_state(), cuda_random_state)


def test_summary_without_data_or_an_input_says_what_to_give():
    pytest.importorskip("torchinfo")
    with pytest.raises(ConfigurationError, match=r"no batch.*with_train_data.*summary\(input_size=\(32, 784\)\)"):
        Trial(_mlp()).summary()


def test_summary_of_a_plain_function_model_is_refused():
    pytest.importorskip("torchinfo")
    with pytest.raises(ConfigurationError, match="needs an nn.Module model, got function"):
        Trial(lambda x: x).summary(input_size=(2, 4))


def test_summary_without_torchinfo_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchinfo", None)  # import torchinfo now raises ImportError
    with pytest.raises(ImportError, match=r"pip install torchbearer\[summary\]"):
        _trial(_mlp()).summary()
