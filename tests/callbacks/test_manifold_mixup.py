import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchbearer
from torchbearer.callbacks.manifold_mixup import ManifoldMixup
from torchbearer.callbacks.mixup import Mixup


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
            nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
            nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Linear(2, 3)

    def forward(self, x):
        return self.classifier(self.convs(x).mean(dim=(2, 3)))


def test_spec_example_selects_the_convolutions_of_the_sequential():
    mixup = ManifoldMixup().at_depth(1).with_layer_type_filter([nn.BatchNorm2d, nn.ReLU])
    assert mixup.get_selected_layers(ConvNet()) == ["convs_0", "convs_3", "convs_6"]


def test_default_selects_top_level_children():
    assert ManifoldMixup().get_selected_layers(ConvNet()) == ["convs", "classifier"]


def test_all_depths_and_name_filters():
    names = ManifoldMixup().at_depth(None).with_layer_filter(["convs"]).get_selected_layers(ConvNet())
    assert names == ["convs_" + str(i) for i in range(9)] + ["classifier"]


def test_for_layers_picks_named_layers_at_any_depth():
    assert ManifoldMixup().for_layers("convs_3").get_selected_layers(ConvNet()) == ["convs_3"]
    assert ManifoldMixup().for_layers(["classifier", "convs_1"]).get_selected_layers(ConvNet()) == [
        "convs_1",
        "classifier",
    ]


def test_fluent_methods_return_the_callback():
    mixup = ManifoldMixup()
    assert mixup.for_layers("a") is mixup
    assert mixup.with_layer_filter(["b"]) is mixup
    assert mixup.with_layer_type_filter([nn.ReLU]) is mixup
    assert mixup.at_depth(2) is mixup


def _two_layer_setup():
    first, second = nn.Linear(4, 5), nn.Linear(5, 2)
    model = nn.Sequential(first, second)
    mixup = ManifoldMixup(lam=0.3).for_layers("0")
    state = {torchbearer.MODEL: model, torchbearer.X: torch.randn(6, 4), torchbearer.Y_TRUE: torch.arange(6)}
    mixup.on_start(state)
    mixup.on_sample(state)
    return model, first, second, mixup, state


def test_chosen_layer_output_is_mixed_in_training():
    model, first, second, _, state = _two_layer_setup()
    permutation = state[torchbearer.MIXUP_PERMUTATION]
    hidden = F.linear(state[torchbearer.X], first.weight, first.bias)  # calling `first` would mix too
    expected = second(0.3 * hidden + 0.7 * hidden[permutation])
    assert torch.allclose(model(state[torchbearer.X]), expected)
    assert state[torchbearer.MIXUP_LAMBDA] == 0.3
    targets, partners = state[torchbearer.Y_TRUE]
    assert torch.equal(targets, torch.arange(6)) and torch.equal(partners, permutation)


def test_chosen_layer_is_not_mixed_in_eval_mode_after_the_step_or_after_the_run():
    model, first, second, mixup, state = _two_layer_setup()
    inputs = state[torchbearer.X]
    plain = second(F.linear(inputs, first.weight, first.bias))
    model.eval()
    assert torch.allclose(model(inputs), plain)
    model.train()
    mixup.on_step_training(state)
    assert torch.allclose(model(inputs), plain)
    state[torchbearer.Y_TRUE] = torch.arange(6)
    mixup.on_sample(state)
    mixup.on_end(state)
    assert torch.allclose(model(inputs), plain)


def test_selection_matching_no_layer_names_the_available_ones():
    mixup = ManifoldMixup().for_layers("missing")
    with pytest.raises(ValueError, match=r"convs.*classifier"):
        mixup.on_start({torchbearer.MODEL: ConvNet()})


def test_manifold_mixup_trains_with_mixup_loss():
    x = torch.randn(24, 1, 7, 7)
    y = torch.randint(0, 3, (24,))
    model = ConvNet()
    mixup = ManifoldMixup(alpha=1.0).at_depth(1).with_layer_type_filter([nn.BatchNorm2d, nn.ReLU])
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), Mixup.mixup_loss, metrics=["acc", "loss"],
        callbacks=[mixup], verbose=0,
    )  # fmt: skip
    history = trial.with_train_data(x, y, batch_size=8).with_val_data(x, y, batch_size=8).run(2)
    assert {"running_mixup_acc", "mixup_acc", "val_mixup_acc", "val_loss"} <= set(history[-1])
    assert all(not module._forward_hooks for module in model.modules())


def test_manifold_mixup_cites_its_paper():
    assert "verma2019manifold" in ManifoldMixup.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_manifold_mixup_step_runs_on_cuda_without_host_device_sync():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).cuda()
    mixup = ManifoldMixup().at_depth(0).with_layer_type_filter([nn.ReLU])
    state = {
        torchbearer.MODEL: model,
        torchbearer.X: torch.randn(6, 4, device="cuda"),
        torchbearer.Y_TRUE: torch.randint(0, 2, (6,), device="cuda"),
    }
    mixup.on_start(state)
    torch.cuda.set_sync_debug_mode("error")
    try:
        mixup.on_sample(state)
        output = model(state[torchbearer.X])
        state[torchbearer.Y_PRED] = output
        loss = Mixup.mixup_loss(state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.is_cuda
