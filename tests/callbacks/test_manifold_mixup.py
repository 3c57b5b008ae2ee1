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


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_every_training_batch_outputs_the_lambda_mix_at_one_layer_of_the_clean_outputs_and_their_permutation(device):
    torch.manual_seed(4)
    layers = [nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)]
    model = nn.Sequential(*layers)
    clean = {}  # hooks registered before ManifoldMixup's see each layer's output before it is mixed
    for index, layer in enumerate(layers):
        layer.register_forward_hook(lambda module, args, output, index=index: clean.__setitem__(index, output))
    mixed_at = []

    def mix_from(outputs, index, lam, permutation):
        """The model's output when layer ``index``'s clean output is mixed and the rest runs on."""
        hidden = lam * outputs[index] + (1 - lam) * outputs[index][permutation]
        for later in layers[index + 1 :]:  # when `index` is the chosen layer, calling these mixes nothing
            hidden = later(hidden)
        return hidden

    @torchbearer.callbacks.on_forward
    def check(state):
        lam, permutation = state[torchbearer.MIXUP_LAMBDA], state[torchbearer.MIXUP_PERMUTATION]
        output, outputs = state[torchbearer.Y_PRED].detach(), dict(clean)  # mix_from's calls refill `clean`
        with torch.no_grad():
            expected = [mix_from(outputs, index, lam, permutation) for index in range(len(layers))]
        mixed_at.append([index for index, mix in enumerate(expected) if torch.allclose(output, mix, atol=1e-5)])

    x, y = torch.randn(24, 4), torch.randint(0, 3, (24,))
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), Mixup.mixup_loss, callbacks=[ManifoldMixup(), check],
        verbose=0,
    )  # fmt: skip
    trial.with_train_data(x, y, batch_size=6, num_workers=0).to(device).run(3)

    assert len(mixed_at) == 12
    assert all(len(matches) == 1 for matches in mixed_at), mixed_at  # mixed, and at exactly one layer
    assert len({matches[0] for matches in mixed_at}) > 1  # the layer is drawn again for each batch
