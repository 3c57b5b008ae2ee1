"""Regularisers that cut rectangles out of images: Cutout, RandomErase and CutMix.

Holes are built with tensor comparisons on the batch's device (no per-image Python loop), so the
callbacks cost no host-device synchronisation.
"""

from __future__ import annotations

import math

import torch

import torchbearer
from torchbearer.bases import Callback, cite
from torchbearer.callbacks.mixup import TargetMixer, draw_lambda, random_permutation

_CUTOUT_BIBTEX = """
@article{devries2017cutout,
  title={Improved Regularization of Convolutional Neural Networks with Cutout},
  author={DeVries, Terrance and Taylor, Graham W.},
  journal={arXiv preprint arXiv:1708.04552},
  year={2017}
}
"""

_RANDOM_ERASE_BIBTEX = """
@article{zhong2017random,
  title={Random Erasing Data Augmentation},
  author={Zhong, Zhun and Zheng, Liang and Kang, Guoliang and Li, Shaozi and Yang, Yi},
  journal={arXiv preprint arXiv:1708.04896},
  year={2017}
}
"""

_CUTMIX_BIBTEX = """
@inproceedings{yun2019cutmix,
  title={CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features},
  author={Yun, Sangdoo and Han, Dongyoon and Oh, Seong Joon and Chun, Sanghyuk and Choe, Junsuk and Yoo, Youngjoon},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision},
  pages={6023--6032},
  year={2019}
}
"""


def _span(size: int, extent: int, count: tuple[int, int], device: torch.device, whole: bool) -> torch.Tensor:
    """Membership ``[B, n, extent]`` of each position in a span of ``size`` at a random place.

    The span is ``[c - size // 2, c - size // 2 + size)`` around a random centre ``c``, clipped to
    ``[0, extent)``; with ``whole``, it starts at a random position that keeps all of it inside.
    """
    if whole:
        starts = torch.randint(0, extent - size + 1, count, device=device)
    else:
        starts = torch.randint(0, extent, count, device=device) - size // 2
    starts = starts.unsqueeze(-1)
    positions = torch.arange(extent, device=device)
    return (positions >= starts) & (positions < starts + size)


def hole_mask(images: torch.Tensor, n_holes: int, width: int, height: int, whole: bool = False) -> torch.Tensor:
    """Boolean mask, True inside holes, shaped ``[B, 1, ..., H, W]`` to broadcast against ``images``.

    Each image gets ``n_holes`` rectangles of ``width`` x ``height`` at random centres, clipped to
    the image; with ``whole``, at random places where they fit whole (``width``, ``height`` at most
    the image's).
    """
    batch, rows, cols = images.size(0), images.size(-2), images.size(-1)
    in_rows = _span(int(height), rows, (batch, n_holes), images.device, whole)
    in_cols = _span(int(width), cols, (batch, n_holes), images.device, whole)
    holes = (in_rows.unsqueeze(-1) & in_cols.unsqueeze(-2)).any(dim=1)
    return holes.view(batch, *([1] * (images.dim() - 3)), rows, cols)


class BatchCutout:
    """Make 0/1 masks with rectangular holes for a batch of images.

    Args:
        n_holes: Holes per image.
        width: Hole width in pixels.
        height: Hole height in pixels.

    Example:
        >>> mask = BatchCutout(1, 8, 8)(images)  # images [B, C, H, W]; mask is 0 in the holes
        >>> cut = images * mask
    """

    def __init__(self, n_holes: int, width: int, height: int) -> None:
        self.n_holes = n_holes
        self.width = width
        self.height = height

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Return a mask shaped like ``img`` (``[B, C, H, W]``): 0 inside the holes, 1 elsewhere."""
        holes = hole_mask(img, self.n_holes, self.width, self.height)
        return (~holes).to(img.dtype).expand_as(img).clone()


@cite(_CUTOUT_BIBTEX)
class Cutout(Callback):
    """Cutout: set ``n_holes`` random squares of each training image to a constant.

    Squares of side ``length`` are centred at random positions and clipped to the image; the new
    batch replaces ``X`` (the loaded tensor is not written to).

    Args:
        n_holes: Squares per image.
        length: Side of each square in pixels.
        constant: The value written into the squares.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[Cutout(1, 16)])
    """

    def __init__(self, n_holes: int, length: int, constant: float = 0.0) -> None:
        self.n_holes = n_holes
        self.length = length
        self.constant = constant

    def on_sample(self, state: dict) -> None:
        """Cut the holes out of the training batch."""
        images = state[torchbearer.X]
        holes = hole_mask(images, self.n_holes, self.length, self.length)
        state[torchbearer.X] = images.masked_fill(holes, self.constant)


@cite(_RANDOM_ERASE_BIBTEX)
class RandomErase(Callback):
    """Random erasing: fill ``n_holes`` random squares of each training image with ``U(0, 1)`` noise.

    Args:
        n_holes: Squares per image.
        length: Side of each square in pixels.
    """

    def __init__(self, n_holes: int, length: int) -> None:
        self.n_holes = n_holes
        self.length = length

    def on_sample(self, state: dict) -> None:
        """Replace the squares of the training batch with noise."""
        images = state[torchbearer.X]
        holes = hole_mask(images, self.n_holes, self.length, self.length)
        state[torchbearer.X] = torch.where(holes, torch.rand_like(images), images)


@cite(_CUTMIX_BIBTEX)
class CutMix(TargetMixer):
    """CutMix: paste a random box from another image of the batch into each training image.

    Per batch, ``lam ~ Beta(alpha, alpha)`` sets the box to ``round(sqrt(1 - lam) * W)`` by
    ``round(sqrt(1 - lam) * H)``; each image gets the box at its own random place, wholly inside the
    image, filled from image ``permutation[i]``. So every image keeps the same area, and the target
    weight is that area ratio exactly: ``lam = 1 - box_area / (H * W)``, one number for the batch
    (``MIXUP_LAMBDA``, a 0-d tensor, as in 0.5).

    Args:
        alpha: Concentration of the Beta distribution.
        classes: Number of classes, to one-hot class-index targets (not needed with ``mixup_loss``).
        mixup_loss: If True, targets become ``(y, y[permutation])`` with ``MIXUP_LAMBDA``
            and ``MIXUP_PERMUTATION`` set, for :meth:`Mixup.mixup_loss`; validation targets are left
            alone. Otherwise targets become soft one-hot mixes and validation targets one-hot floats.

    Example:
        >>> trial = Trial(model, optimizer, nn.BCEWithLogitsLoss(), callbacks=[CutMix(1.0, classes=10)])
    """

    def __init__(self, alpha: float, classes: int = -1, mixup_loss: bool = False) -> None:
        super().__init__(classes=classes, mixup_loss=mixup_loss)
        self.alpha = alpha

    def on_sample(self, state: dict) -> None:
        """Paste boxes from the permuted batch and mix the targets by area."""
        images = state[torchbearer.X]
        rows, cols = images.size(-2), images.size(-1)
        # The box size must be a Python int, so lam is drawn on the host: no device sync.
        side = math.sqrt(1.0 - draw_lambda(self.alpha))
        width, height = round(side * cols), round(side * rows)
        holes = hole_mask(images, 1, width, height, whole=True)
        permutation = random_permutation(images)
        state[torchbearer.X] = torch.where(holes, images[permutation], images)
        # Whole boxes paste the same area into every image, so the area ratio is known on the host.
        lam = torch.tensor(1.0 - (width * height) / (rows * cols))
        self.mix_targets(state, lam, permutation)
