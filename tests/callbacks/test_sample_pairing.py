import pytest
import torch

import torchbearer
from torchbearer.callbacks.sample_pairing import SamplePairing


def _on_epochs(policy, epochs):
    return [epoch for epoch in range(epochs) if policy({torchbearer.EPOCH: epoch})]


def test_default_policy_alternates_on_and_off_epochs_inside_its_range():
    policy = SamplePairing.default_policy(start_epoch=2, end_epoch=12, on_epochs=3, off_epochs=2)
    assert _on_epochs(policy, 15) == [2, 3, 4, 7, 8, 9]


def test_default_policy_keeps_one_decision_through_an_epoch():
    policy = SamplePairing.default_policy(0, 10, 1, 1)
    assert [policy({torchbearer.EPOCH: 1}) for _ in range(3)] == [False, False, False]
    assert [policy({torchbearer.EPOCH: 2}) for _ in range(3)] == [True, True, True]


def test_sample_pairing_without_policy_pairs_from_epoch_100_for_8_of_every_10_epochs():
    pairing = SamplePairing()
    assert _on_epochs(pairing.policy, 120) == list(range(100, 108)) + list(range(110, 118))
    assert not pairing.policy({torchbearer.EPOCH: 800})


def test_sample_pairing_averages_each_image_with_a_partner_and_keeps_targets():
    images = (torch.arange(6, dtype=torch.float) + 1).view(-1, 1, 1, 1).expand(6, 2, 3, 3).clone()
    targets = torch.arange(6)
    state = {torchbearer.X: images, torchbearer.Y_TRUE: targets, torchbearer.EPOCH: 0}
    SamplePairing(lambda state: True).on_sample(state)
    paired = state[torchbearer.X]
    partners = 2 * paired[:, 0, 0, 0] - images[:, 0, 0, 0]
    assert sorted(partners.tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert torch.equal(paired, ((images + partners.view(-1, 1, 1, 1)) / 2))
    assert state[torchbearer.Y_TRUE] is targets


def test_sample_pairing_leaves_batch_alone_when_policy_is_off():
    images = torch.rand(4, 1, 3, 3)
    state = {torchbearer.X: images, torchbearer.EPOCH: 0}
    SamplePairing(SamplePairing.default_policy(5, 10, 1, 1)).on_sample(state)
    assert state[torchbearer.X] is images


def test_sample_pairing_cites_its_paper():
    assert "inoue2018data" in SamplePairing.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_pairing_runs_on_cuda_without_host_device_sync():
    state = {torchbearer.X: torch.rand(8, 3, 4, 4, device="cuda"), torchbearer.EPOCH: 0}
    torch.cuda.set_sync_debug_mode("error")
    try:
        SamplePairing(SamplePairing.default_policy(0, 10, 1, 1)).on_sample(state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert state[torchbearer.X].is_cuda
