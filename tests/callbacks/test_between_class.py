import pytest
import torch
import torch.nn.functional as F

import torchbearer
from torchbearer.callbacks.between_class import BCPlus


def _batch():
    return {torchbearer.X: torch.randn(6, 2, 4, 4) * 3 + 1, torchbearer.Y_TRUE: torch.tensor([0, 1, 2, 0, 1, 2])}


def _expected_mix(images, lam, permutation):
    flat = images.flatten(1)
    first = images - flat.mean(1).view(-1, 1, 1, 1)
    spread = flat.std(1).view(-1, 1, 1, 1)
    p = 1 / (1 + (spread / spread[permutation]) * ((1 - lam) / lam))
    return (p * first + (1 - p) * first[permutation]) / torch.sqrt(p**2 + (1 - p) ** 2)


def test_bcplus_mixes_zero_mean_images_with_the_between_class_formula():
    state = _batch()
    images, targets = state[torchbearer.X], state[torchbearer.Y_TRUE]
    BCPlus(mixup_loss=True, alpha=1).on_sample(state)
    lam, permutation = state[torchbearer.MIXUP_LAMBDA], state[torchbearer.MIXUP_PERMUTATION]
    assert torch.allclose(state[torchbearer.X], _expected_mix(images, lam, permutation), atol=1e-5)
    first, second = state[torchbearer.Y_TRUE]
    assert torch.equal(first, targets) and torch.equal(second, targets[permutation])


def test_bcplus_soft_targets_mix_one_hots_with_lambda():
    torch.manual_seed(3)
    recorded = _batch()
    BCPlus(mixup_loss=True).on_sample(recorded)
    torch.manual_seed(3)
    state = _batch()
    BCPlus(classes=3).on_sample(state)
    lam, permutation = recorded[torchbearer.MIXUP_LAMBDA], recorded[torchbearer.MIXUP_PERMUTATION]
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    assert torch.allclose(state[torchbearer.Y_TRUE], lam * one_hot + (1 - lam) * one_hot[permutation])
    assert torch.equal(state[torchbearer.X], recorded[torchbearer.X])


def test_bcplus_one_hots_validation_targets_unless_mixup_loss():
    state = {torchbearer.Y_TRUE: torch.tensor([1, 0])}
    BCPlus(classes=2).on_sample_validation(state)
    assert torch.equal(state[torchbearer.Y_TRUE], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    plain = {torchbearer.Y_TRUE: torch.tensor([1, 0])}
    BCPlus(mixup_loss=True).on_sample_validation(plain)
    assert torch.equal(plain[torchbearer.Y_TRUE], torch.tensor([1, 0]))


def test_bc_loss_is_kl_divergence_from_targets_per_sample():
    predictions = torch.randn(3, 4)
    targets = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    log_q = F.log_softmax(predictions, dim=1)
    safe_log_p = torch.where(targets > 0, targets.log(), torch.zeros_like(targets))
    expected = (targets * (safe_log_p - log_q)).sum() / 3
    loss = BCPlus.bc_loss({torchbearer.Y_PRED: predictions, torchbearer.Y_TRUE: targets})
    assert torch.allclose(loss, expected)


def test_bc_loss_on_one_hot_targets_equals_cross_entropy():
    predictions, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    loss = BCPlus.bc_loss({torchbearer.Y_PRED: predictions, torchbearer.Y_TRUE: F.one_hot(labels, 3).float()})
    assert torch.allclose(loss, F.cross_entropy(predictions, labels))


def test_bcplus_keeps_constant_images_finite():
    state = {torchbearer.X: torch.ones(4, 1, 3, 3), torchbearer.Y_TRUE: torch.tensor([0, 1, 0, 1])}
    BCPlus(classes=2).on_sample(state)
    assert torch.isfinite(state[torchbearer.X]).all()


def test_bcplus_trains_with_bc_loss():
    x = torch.randn(40, 1, 2, 2)
    y = x.flatten(1)[:, :3].argmax(dim=1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    trial = torchbearer.Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        BCPlus.bc_loss,
        metrics=["loss", "acc"],
        callbacks=[BCPlus(classes=3)],
        verbose=0,
    )
    history = trial.with_train_data(x, y, batch_size=8).with_val_data(x, y, batch_size=8).run(2)
    assert {"running_loss", "loss", "val_loss", "val_acc"} <= set(history[-1])


def test_bcplus_cites_its_paper():
    assert "tokozume2018between" in BCPlus.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bcplus_and_bc_loss_run_on_cuda_without_host_device_sync():
    state = {
        torchbearer.X: torch.randn(8, 3, 4, 4, device="cuda"),
        torchbearer.Y_TRUE: torch.randint(0, 3, (8,), device="cuda"),
        torchbearer.Y_PRED: torch.randn(8, 3, device="cuda"),
    }
    torch.cuda.set_sync_debug_mode("error")
    try:
        BCPlus(classes=3).on_sample(state)
        loss = BCPlus.bc_loss(state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.is_cuda and state[torchbearer.X].is_cuda
