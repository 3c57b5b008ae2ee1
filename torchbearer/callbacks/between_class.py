"""BC+ (between-class learning): mix zero-mean images weighted by their energy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import torchbearer
from torchbearer.bases import cite
from torchbearer.callbacks.mixup import TargetMixer, draw_lambda, random_permutation

_BC_BIBTEX = """
@inproceedings{tokozume2018between,
  title={Between-class Learning for Image Classification},
  author={Tokozume, Yuji and Ushiku, Yoshitaka and Harada, Tatsuya},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
  pages={5486--5494},
  year={2018}
}
"""

_EPSILON = 1e-8
"""Floor for divisors (an image's standard deviation, ``lam``) so constant images and ``lam = 0`` stay finite."""


def _per_sample_shape(batch: torch.Tensor) -> tuple[int, ...]:
    return (batch.size(0),) + (1,) * (batch.dim() - 1)


@cite(_BC_BIBTEX)
class BCPlus(TargetMixer):
    """BC+: mix each zero-mean training image with a permuted partner, weighted by their spread.

    Each image is made zero-mean; with ``lam ~ Beta(alpha, alpha)`` and per-image standard
    deviations ``s1, s2`` the mixing weight is ``p = 1 / (1 + (s1 / s2) * (1 - lam) / lam)`` and
    ``X = (p * x1 + (1 - p) * x2) / sqrt(p**2 + (1 - p)**2)``. Targets are mixed with ``lam``.

    Args:
        mixup_loss: If True, targets become ``(y, y[permutation])`` with ``MIXUP_LAMBDA`` and
            ``MIXUP_PERMUTATION`` set, for :meth:`Mixup.mixup_loss`. Otherwise soft one-hot mixes for
            :meth:`BCPlus.bc_loss`, and validation targets one-hot floats.
        alpha: Concentration of the Beta distribution.
        classes: Number of classes, to one-hot class-index targets (not needed with ``mixup_loss``).

    Example:
        >>> trial = Trial(model, optimizer, BCPlus.bc_loss, callbacks=[BCPlus(classes=10)])
    """

    def __init__(self, mixup_loss: bool = False, alpha: float = 1, classes: int = -1) -> None:
        super().__init__(classes=classes, mixup_loss=mixup_loss)
        self.alpha = alpha

    @staticmethod
    def bc_loss(state: dict) -> torch.Tensor:
        """KL divergence from the soft targets to ``softmax(Y_PRED)``, summed and divided by the batch size.

        Args:
            state: The state, with logits in ``Y_PRED`` and soft (or one-hot) targets in ``Y_TRUE``.

        Returns:
            The scalar loss.
        """
        log_probabilities = F.log_softmax(state[torchbearer.Y_PRED], dim=1)
        return F.kl_div(log_probabilities, state[torchbearer.Y_TRUE], reduction="batchmean")

    def on_sample(self, state: dict) -> None:
        """Mix the training batch between classes and mix the targets with ``lam``."""
        lam = draw_lambda(self.alpha)
        images = state[torchbearer.X]
        flat = images.flatten(1)
        first = images - flat.mean(dim=1).view(_per_sample_shape(images))
        spread = flat.std(dim=1).clamp_min(_EPSILON).view(_per_sample_shape(images))
        permutation = random_permutation(images)
        second = first[permutation]
        weight = 1.0 / (1.0 + (spread / spread[permutation]) * ((1.0 - lam) / max(lam, _EPSILON)))
        state[torchbearer.X] = (weight * first + (1.0 - weight) * second) / (weight**2 + (1.0 - weight) ** 2).sqrt()
        self.mix_targets(state, lam, permutation)
