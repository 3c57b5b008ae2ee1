import pytest
import torch
import torch.nn.functional as F

import torchbearer
from torchbearer.callbacks.between_class import BCPlus
from torchbearer.callbacks.cutout import CutMix
from torchbearer.callbacks.manifold_mixup import ManifoldMixup
from torchbearer.callbacks.mixup import Mixup, MixupAcc


def _batch():
    return {
        torchbearer.X: torch.randn(8, 5),
        torchbearer.Y_TRUE: torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
        torchbearer.DATA: torchbearer.TRAIN_DATA,
    }


def test_mixup_output_is_lambda_blend_with_recorded_permutation():
    state = _batch()
    inputs, targets = state[torchbearer.X], state[torchbearer.Y_TRUE]
    Mixup(alpha=0.4).on_sample(state)
    lam, permutation = state[torchbearer.MIXUP_LAMBDA], state[torchbearer.MIXUP_PERMUTATION]
    assert 0 <= lam <= 1
    assert sorted(permutation.tolist()) == list(range(8))
    assert torch.allclose(state[torchbearer.X], lam * inputs + (1 - lam) * inputs[permutation])
    first, second = state[torchbearer.Y_TRUE]
    assert torch.equal(first, targets) and torch.equal(second, targets[permutation])


def test_mixup_fixed_lambda_is_used_every_batch():
    for _ in range(3):
        state = _batch()
        Mixup(lam=0.3).on_sample(state)
        assert state[torchbearer.MIXUP_LAMBDA] == 0.3


def test_mixup_random_is_recognised_by_value_and_draws_a_new_lambda_per_batch():
    mixup = Mixup(alpha=1.0, lam=-10.0)
    lambdas = set()
    for _ in range(5):
        state = _batch()
        mixup.on_sample(state)
        lambdas.add(float(state[torchbearer.MIXUP_LAMBDA]))
    assert len(lambdas) == 5 and all(0 <= lam <= 1 for lam in lambdas)


def test_mixup_with_non_positive_alpha_leaves_inputs_unmixed():
    state = _batch()
    inputs = state[torchbearer.X]
    Mixup(alpha=0).on_sample(state)
    assert state[torchbearer.MIXUP_LAMBDA] == 1.0
    assert torch.equal(state[torchbearer.X], inputs)


def _mixed_state(mixer):
    """A batch of 8 images (image i filled with i + 1) mixed by ``mixer``, with random logits."""
    images = (torch.arange(8.0) + 1).view(-1, 1, 1, 1).expand(8, 1, 6, 6).clone()
    state = {torchbearer.X: images, torchbearer.Y_TRUE: torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}
    if isinstance(mixer, ManifoldMixup):
        state[torchbearer.MODEL] = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3))
        mixer.on_start(state)
    mixer.on_sample(state)
    state[torchbearer.Y_PRED] = torch.randn(8, 3)
    state[torchbearer.DATA] = torchbearer.TRAIN_DATA
    return state


@pytest.mark.parametrize(
    "mixer",
    [Mixup(), Mixup(lam=1), CutMix(1.0, mixup_loss=True), BCPlus(mixup_loss=True), ManifoldMixup()],
    ids=["Mixup", "Mixup(lam=1)", "CutMix", "BCPlus", "ManifoldMixup"],
)
def test_mixup_lambda_is_a_0d_tensor_that_float_and_item_both_read(mixer):
    torch.manual_seed(2)
    lam = _mixed_state(mixer)[torchbearer.MIXUP_LAMBDA]

    assert isinstance(lam, torch.Tensor) and lam.dim() == 0 and lam.dtype == torch.float32
    assert 0 <= float(lam) == lam.item() <= 1


@pytest.mark.parametrize("mixer", [Mixup(alpha=0.4), CutMix(1.0, mixup_loss=True)], ids=["Mixup", "CutMix"])
def test_mixup_loss_and_acc_weigh_each_sample_by_the_share_of_it_that_is_its_own(mixer):
    torch.manual_seed(3)
    state = _mixed_state(mixer)
    first, second = state[torchbearer.Y_TRUE]
    permutation = state[torchbearer.MIXUP_PERMUTATION]
    own = float(state[torchbearer.MIXUP_LAMBDA])
    if isinstance(mixer, CutMix):  # the pixels still showing the image's own value, per moved image
        moved = permutation != torch.arange(8)
        shares = (state[torchbearer.X] == (torch.arange(8.0) + 1).view(-1, 1, 1, 1)).flatten(1).float().mean(1)
        assert torch.allclose(shares[moved], torch.full_like(shares[moved], own))
    predictions = state[torchbearer.Y_PRED]
    first_loss = F.cross_entropy(predictions, first, reduction="none")
    second_loss = F.cross_entropy(predictions, second, reduction="none")
    expected_loss = (own * first_loss + (1 - own) * second_loss).mean()
    predicted = predictions.argmax(1)
    expected_acc = (own * (predicted == first).float() + (1 - own) * (predicted == second).float()).mean()

    assert Mixup.mixup_loss(state).item() == pytest.approx(expected_loss.item())
    metric = MixupAcc()
    metric.reset(state)
    metric.train()
    metric.process(state)
    assert metric.process_final(state)["mixup_acc"] == pytest.approx(expected_acc.item())


def test_mixup_loss_weights_both_targets_in_training():
    predictions = torch.randn(4, 3)
    first, second = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 0])
    state = {
        torchbearer.Y_PRED: predictions,
        torchbearer.Y_TRUE: (first, second),
        torchbearer.MIXUP_LAMBDA: 0.7,
        torchbearer.DATA: torchbearer.TRAIN_DATA,
    }
    expected = 0.7 * F.cross_entropy(predictions, first) + 0.3 * F.cross_entropy(predictions, second)
    assert torch.allclose(Mixup.mixup_loss(state), expected)


def test_mixup_loss_is_cross_entropy_on_plain_validation_targets():
    predictions, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    state = {
        torchbearer.Y_PRED: predictions,
        torchbearer.Y_TRUE: targets,
        torchbearer.DATA: torchbearer.VALIDATION_DATA,
    }
    assert torch.allclose(Mixup.mixup_loss(state), F.cross_entropy(predictions, targets))


def test_mixup_loss_weights_each_sample_by_its_own_lambda():
    predictions = torch.randn(2, 3)
    first, second = torch.tensor([0, 1]), torch.tensor([2, 2])
    lam = torch.tensor([1.0, 0.0])
    state = {torchbearer.Y_PRED: predictions, torchbearer.Y_TRUE: (first, second), torchbearer.MIXUP_LAMBDA: lam}
    per_sample = torch.stack(
        [F.cross_entropy(predictions[:1], first[:1]), F.cross_entropy(predictions[1:], second[1:])]
    )
    assert torch.allclose(Mixup.mixup_loss(state), per_sample.mean())


def test_mixup_acc_weights_accuracy_against_both_targets():
    predictions = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    state = {
        torchbearer.Y_PRED: predictions,
        torchbearer.Y_TRUE: (torch.tensor([0, 1, 0, 2]), torch.tensor([1, 1, 2, 0])),
        torchbearer.MIXUP_LAMBDA: 0.75,
        torchbearer.DATA: torchbearer.TRAIN_DATA,
    }
    metric = MixupAcc()
    metric.reset(state)
    metric.train()
    assert metric.process(state)["running_mixup_acc"] == pytest.approx((0.75 + 1.0 + 0.25 + 0.25) / 4)
    assert metric.process_final(state)["mixup_acc"] == pytest.approx((0.75 + 1.0 + 0.25 + 0.25) / 4)


def test_mixup_acc_is_categorical_accuracy_in_validation():
    state = {
        torchbearer.Y_PRED: torch.tensor([[5.0, 0], [0, 5.0], [5.0, 0]]),
        torchbearer.Y_TRUE: torch.tensor([0, 0, 0]),
        torchbearer.DATA: torchbearer.VALIDATION_DATA,
    }
    metric = MixupAcc()
    metric.reset(state)
    metric.eval(data_key=torchbearer.VALIDATION_DATA)
    metric.process(state)
    assert metric.process_final(state) == {"val_mixup_acc": pytest.approx(2 / 3)}


def test_acc_resolves_to_mixup_acc_for_the_mixup_loss():
    from torchbearer.metrics.default import DefaultAccuracy

    metric = DefaultAccuracy()
    metric.reset({torchbearer.CRITERION: Mixup.mixup_loss})
    assert metric.name == "mixup_acc"


def test_trial_with_mixup_reports_mixup_accuracy_and_trains():
    x = torch.randn(40, 4)
    y = x[:, :3].argmax(dim=1)
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        Mixup.mixup_loss,
        metrics=["acc", "loss"],
        callbacks=[Mixup(alpha=0.4)],
        verbose=0,
    )
    trial.with_train_data(x, y, batch_size=8).with_val_data(x, y, batch_size=8)
    history = trial.run(6)
    assert {"running_mixup_acc", "mixup_acc", "val_mixup_acc", "loss", "val_loss"} <= set(history[0])
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_mixup_cites_its_paper():
    assert "zhang2018mixup" in Mixup.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixup_and_its_loss_run_on_cuda_without_host_device_sync():
    state = {
        torchbearer.X: torch.randn(8, 5, device="cuda"),
        torchbearer.Y_TRUE: torch.randint(0, 3, (8,), device="cuda"),
        torchbearer.Y_PRED: torch.randn(8, 3, device="cuda"),
    }
    torch.cuda.set_sync_debug_mode("error")
    try:
        Mixup().on_sample(state)
        loss = Mixup.mixup_loss(state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.is_cuda and state[torchbearer.MIXUP_PERMUTATION].is_cuda
