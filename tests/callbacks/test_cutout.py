import pytest
import torch

import torchbearer
from torchbearer.callbacks.cutout import BatchCutout, CutMix, Cutout, RandomErase


def _constant_images(batch=6, channels=2, size=12):
    """Image i is filled with the value i + 1, so every pixel tells which image it came from."""
    return (torch.arange(batch, dtype=torch.float) + 1).view(-1, 1, 1, 1).expand(batch, channels, size, size).clone()


def _hole_boxes(mask):
    """Per image (first channel): the bounding box of the zeros and whether the zeros fill it."""
    boxes = []
    for image in mask[:, 0]:
        rows = (image == 0).any(dim=1).nonzero().flatten()
        cols = (image == 0).any(dim=0).nonzero().flatten()
        box = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        boxes.append(
            (rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1, (box == 0).all())
        )
    return boxes


def test_batch_cutout_mask_is_one_clipped_rectangle_of_the_given_size_per_image():
    images = torch.rand(64, 3, 10, 12)
    mask = BatchCutout(1, width=4, height=6)(images)
    assert mask.shape == images.shape
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask[:, 0], mask[:, 2])
    for top, bottom, left, right, filled in _hole_boxes(mask):
        assert filled
        assert bottom - top == 6 or top == 0 or bottom == 10
        assert right - left == 4 or left == 0 or right == 12
        assert bottom - top <= 6 and right - left <= 4


def test_batch_cutout_hole_larger_than_twice_the_image_covers_it_whatever_the_centre():
    mask = BatchCutout(2, width=20, height=20)(torch.rand(5, 1, 8, 8))
    assert (mask == 0).all()


def test_cutout_sets_holes_to_constant_and_keeps_other_pixels():
    images = torch.rand(16, 3, 12, 12)
    state = {torchbearer.X: images}
    Cutout(2, 4, constant=-1.0).on_sample(state)
    cut = state[torchbearer.X]
    holes = cut == -1.0
    assert holes.any()
    assert torch.equal(cut[~holes], images[~holes])
    assert (holes.flatten(1).sum(1) <= 2 * 4 * 4 * 3).all()
    assert images.min() >= 0  # the loaded batch itself is not written to


def test_cutout_zeroes_exactly_the_hole_area_within_bounds():
    state = {torchbearer.X: torch.ones(32, 1, 9, 9)}
    Cutout(1, 4).on_sample(state)
    for top, bottom, left, right, filled in _hole_boxes(state[torchbearer.X]):
        assert filled
        assert (bottom - top, right - left) == (4, 4) or top == 0 or left == 0 or bottom == 9 or right == 9
    zeros = (state[torchbearer.X] == 0).flatten(1).sum(1)
    assert (zeros <= 16).all() and (zeros > 0).all()


def test_random_erase_fills_holes_with_uniform_noise():
    images = torch.full((16, 3, 12, 12), 5.0)
    state = {torchbearer.X: images}
    RandomErase(1, 6).on_sample(state)
    erased = state[torchbearer.X]
    noise = erased[erased != 5.0]
    assert noise.numel() > 16 * 3 * 9
    assert noise.min() >= 0 and noise.max() < 1
    assert noise.std() > 0.2


def test_cutmix_pastes_from_a_permuted_image_and_weights_targets_by_pasted_area():
    images = _constant_images()
    targets = torch.arange(6)
    state = {torchbearer.X: images, torchbearer.Y_TRUE: targets}
    torch.manual_seed(1)
    CutMix(1.0, classes=6).on_sample(state)
    mixed, soft = state[torchbearer.X], state[torchbearer.Y_TRUE]
    assert soft.shape == (6, 6)
    assert torch.allclose(soft.sum(1), torch.ones(6))
    partners = []
    for i in range(6):
        pasted = mixed[i] != i + 1
        partner = int(mixed[i][pasted][0].item()) - 1 if pasted.any() else i
        assert (mixed[i][pasted] == partner + 1).all()
        partners.append(partner)
    moved = [i for i in range(6) if partners[i] != i]
    assert moved
    pasted_share = 1 - (mixed[moved[0]] == moved[0] + 1).float().mean()
    for i in range(6):
        expected = torch.zeros(6)
        expected[i] += 1 - pasted_share
        expected[partners[i]] += pasted_share
        assert torch.allclose(soft[i], expected)


def test_cutmix_pastes_a_whole_box_of_the_same_area_into_every_image():
    images = _constant_images(batch=16, size=9)
    for seed in range(20):
        torch.manual_seed(seed)
        state = {torchbearer.X: images, torchbearer.Y_TRUE: torch.arange(16)}
        CutMix(1.0, mixup_loss=True).on_sample(state)
        permutation = state[torchbearer.MIXUP_PERMUTATION]
        pasted = (state[torchbearer.X] != images)[:, :1]
        areas = {int(pasted[i].sum()) for i in range(16) if permutation[i] != i}
        assert len(areas) <= 1  # no box is clipped at an edge
        if areas:
            assert float(state[torchbearer.MIXUP_LAMBDA]) == pytest.approx(1 - areas.pop() / 81)


def test_cutmix_one_hots_validation_targets_unless_mixup_loss():
    state = {torchbearer.Y_TRUE: torch.tensor([2, 0])}
    CutMix(1.0, classes=3).on_sample_validation(state)
    assert torch.equal(state[torchbearer.Y_TRUE], torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    plain = {torchbearer.Y_TRUE: torch.tensor([2, 0])}
    CutMix(1.0, mixup_loss=True).on_sample_validation(plain)
    assert torch.equal(plain[torchbearer.Y_TRUE], torch.tensor([2, 0]))


def test_cutmix_without_classes_on_index_targets_says_how_to_fix():
    state = {torchbearer.X: torch.rand(4, 1, 8, 8), torchbearer.Y_TRUE: torch.tensor([0, 1, 0, 1])}
    with pytest.raises(ValueError, match=r"classes=-1.*CutMix\(\.\.\., classes=10\)"):
        CutMix(1.0).on_sample(state)


def test_cutmix_uses_given_two_dimensional_targets_without_classes():
    soft = torch.eye(4)
    state = {torchbearer.X: _constant_images(4), torchbearer.Y_TRUE: soft}
    CutMix(0.5).on_sample(state)
    assert torch.allclose(state[torchbearer.Y_TRUE].sum(1), torch.ones(4))


def test_regularisers_cite_their_papers():
    assert "devries2017cutout" in Cutout.__doc__
    assert "zhong2017random" in RandomErase.__doc__
    assert "yun2019cutmix" in CutMix.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cutout_family_runs_on_cuda_without_host_device_sync():
    images, targets = torch.rand(8, 3, 16, 16, device="cuda"), torch.randint(0, 4, (8,), device="cuda")
    states = [{torchbearer.X: images, torchbearer.Y_TRUE: targets} for _ in range(4)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        Cutout(2, 4).on_sample(states[0])
        RandomErase(2, 4).on_sample(states[1])
        CutMix(1.0, classes=4).on_sample(states[2])
        CutMix(1.0, mixup_loss=True).on_sample(states[3])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(state[torchbearer.X].is_cuda for state in states)
    assert states[2][torchbearer.Y_TRUE].is_cuda
    assert states[3][torchbearer.MIXUP_LAMBDA].dim() == 0  # a CPU number: reading it waits for nothing
