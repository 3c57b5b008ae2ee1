"""Mixup, its loss and accuracy, and the target handling every mixing regulariser shares.

A mixing regulariser blends each training sample with another sample of the same batch, chosen by
a random permutation. The targets then become either a pair ``(y, y[permutation])`` with the mixing
coefficient in ``state[MIXUP_LAMBDA]`` (read by :meth:`Mixup.mixup_loss` and :class:`MixupAcc`), or
soft one-hot targets for a multi-label loss. ``MIXUP_LAMBDA`` is a 0-d CPU tensor, as in 0.5: both
``float(lam)`` and ``lam.item()`` read it, without waiting for the device. CutMix, BCPlus and
ManifoldMixup reuse the helpers here.
"""

from __future__ import annotations

from typing import Any, Union

import torch
import torch.nn.functional as F
from torch.distributions import Beta

import torchbearer
from torchbearer.bases import Callback, Metric, cite
from torchbearer.metrics.decorators import mean, running_mean
from torchbearer.metrics.default import __loss_map__

Lambda = Union[float, torch.Tensor]
"""A mixing coefficient: one number for the batch (a float or a 0-d tensor), or one per sample (a 1-D
tensor, which :meth:`Mixup.mixup_loss` and :class:`MixupAcc` also accept)."""

_MIXUP_BIBTEX = """
@inproceedings{zhang2018mixup,
  title={mixup: Beyond Empirical Risk Minimization},
  author={Zhang, Hongyi and Cisse, Moustapha and Dauphin, Yann N. and Lopez-Paz, David},
  booktitle={International Conference on Learning Representations},
  year={2018}
}
"""


def draw_lambda(alpha: float) -> float:
    """Draw ``lam ~ Beta(alpha, alpha)``, or return 1.0 (no mixing) when ``alpha <= 0``.

    The draw uses torch's CPU generator (so ``torch.manual_seed`` makes it repeatable) and returns
    a Python float: reading a CPU tensor is not a host-device synchronisation.
    """
    if alpha <= 0:
        return 1.0
    concentration = torch.tensor(float(alpha), device="cpu")
    return Beta(concentration, concentration, validate_args=False).sample().item()


def random_permutation(batch: torch.Tensor) -> torch.Tensor:
    """A random permutation of the batch indices, made on the batch's device."""
    return torch.randperm(batch.size(0), device=batch.device)


def per_sample(lam: Lambda, like: torch.Tensor) -> Lambda:
    """Shape a per-sample coefficient ``[B]`` to broadcast against ``like`` (``[B, ...]``)."""
    if isinstance(lam, torch.Tensor) and lam.dim() == 1:
        return lam.view(-1, *([1] * (like.dim() - 1)))
    return lam


def to_one_hot(targets: torch.Tensor, classes: int, owner: str) -> torch.Tensor:
    """Return float one-hot targets: class indices ``[B]`` are expanded, 2-D targets are cast.

    Args:
        targets: Class indices ``[B]`` or already one-hot / soft targets ``[B, classes]``.
        classes: Number of classes; needed only for class-index targets.
        owner: Name of the calling callback, for the error message.

    Raises:
        ValueError: If the targets are class indices and ``classes`` was not given.
    """
    if targets.dim() != 1:
        return targets.float()
    if classes < 1:
        raise ValueError(
            f"{owner} got class-index targets of shape {tuple(targets.shape)} but classes={classes}; "
            f"pass the number of classes, e.g. {owner}(..., classes=10), or give one-hot targets."
        )
    one_hot = torch.zeros(targets.size(0), classes, device=targets.device)
    return one_hot.scatter_(1, targets.long().unsqueeze(1), 1.0)  # scatter, not F.one_hot: no range check sync


def record_mix(state: dict, lam: Lambda, permutation: torch.Tensor) -> None:
    """Store the target pair and the mixing keys read by :meth:`Mixup.mixup_loss` and :class:`MixupAcc`.

    A Python number becomes a 0-d tensor (on the CPU, where it was drawn: no device transfer).
    """
    targets = state[torchbearer.Y_TRUE]
    state[torchbearer.Y_TRUE] = (targets, targets[permutation])
    state[torchbearer.MIXUP_LAMBDA] = lam if isinstance(lam, torch.Tensor) else torch.tensor(float(lam))
    state[torchbearer.MIXUP_PERMUTATION] = permutation


class TargetMixer(Callback):
    """Base for regularisers whose targets become soft one-hot mixes or ``(y1, y2)`` pairs.

    Args:
        classes: Number of classes, needed to one-hot class-index targets when ``mixup_loss`` is False.
        mixup_loss: If True, targets become ``(y, y[permutation])`` pairs for :meth:`Mixup.mixup_loss`;
            otherwise ``lam * onehot(y) + (1 - lam) * onehot(y)[permutation]`` for a multi-label loss.
    """

    def __init__(self, classes: int = -1, mixup_loss: bool = False) -> None:
        self.classes = classes
        self.mixup_loss = mixup_loss

    def mix_targets(self, state: dict, lam: Lambda, permutation: torch.Tensor) -> None:
        """Replace ``Y_TRUE`` by the mix of each target with its permuted partner, weighted by ``lam``."""
        if self.mixup_loss:
            record_mix(state, lam, permutation)
            return
        targets = to_one_hot(state[torchbearer.Y_TRUE], self.classes, type(self).__name__)
        weight = per_sample(lam, targets)
        state[torchbearer.Y_TRUE] = weight * targets + (1 - weight) * targets[permutation]

    def on_sample_validation(self, state: dict) -> None:
        """One-hot the validation targets so the same multi-label loss applies (not with ``mixup_loss``)."""
        if not self.mixup_loss and state.get(torchbearer.Y_TRUE) is not None:
            state[torchbearer.Y_TRUE] = to_one_hot(state[torchbearer.Y_TRUE], self.classes, type(self).__name__)


@cite(_MIXUP_BIBTEX)
class Mixup(Callback):
    """Mixup: train on convex combinations of pairs of inputs and their targets.

    Each training batch becomes ``lam * x + (1 - lam) * x[permutation]`` and its targets the pair
    ``(y, y[permutation])``; ``lam`` (a 0-d tensor) and the permutation are stored in ``MIXUP_LAMBDA``
    and ``MIXUP_PERMUTATION``. Use :meth:`Mixup.mixup_loss` as the criterion; ``'acc'`` then reports
    :class:`MixupAcc` (``mixup_acc``). Validation batches are left alone.

    Args:
        alpha: Concentration of the ``Beta(alpha, alpha)`` distribution ``lam`` is drawn from each batch;
            ``alpha <= 0`` gives ``lam = 1`` (no mixing).
        lam: A fixed mixing coefficient, or ``Mixup.RANDOM`` to draw one per batch.

    Example:
        >>> trial = Trial(model, optimizer, Mixup.mixup_loss, metrics=['acc'], callbacks=[Mixup(alpha=0.4)])
    """

    RANDOM: float = -10.0

    def __init__(self, alpha: float = 1.0, lam: float = RANDOM) -> None:
        self.alpha = alpha
        self.lam = lam

    def _lambda(self) -> float:
        return draw_lambda(self.alpha) if self.lam == Mixup.RANDOM else self.lam

    @staticmethod
    def mixup_loss(state: dict) -> torch.Tensor:
        """Cross entropy against both targets of a mixed batch, weighted by ``MIXUP_LAMBDA``.

        When ``Y_TRUE`` is a ``(y1, y2)`` pair (a training batch mixed by a regulariser) the loss is
        ``lam * CE(y_pred, y1) + (1 - lam) * CE(y_pred, y2)``; otherwise (validation, evaluation)
        it is ``CE(y_pred, y_true)``. A per-sample ``lam`` weights each sample's loss.

        Args:
            state: The state, with ``Y_PRED`` (logits), ``Y_TRUE`` and, for pairs, ``MIXUP_LAMBDA``.

        Returns:
            The scalar loss.
        """
        predictions, targets = state[torchbearer.Y_PRED], state[torchbearer.Y_TRUE]
        if not isinstance(targets, (tuple, list)):
            return F.cross_entropy(predictions, targets)
        first, second = targets
        lam = state[torchbearer.MIXUP_LAMBDA]
        first_loss = F.cross_entropy(predictions, first, reduction="none")
        second_loss = F.cross_entropy(predictions, second, reduction="none")
        return (lam * first_loss + (1 - lam) * second_loss).mean()

    def on_sample(self, state: dict) -> None:
        """Mix the training batch with a permutation of itself and pair the targets."""
        lam = self._lambda()
        inputs = state[torchbearer.X]
        permutation = random_permutation(inputs)
        state[torchbearer.X] = lam * inputs + (1 - lam) * inputs[permutation]
        record_mix(state, lam, permutation)


@running_mean
@mean
class MixupAcc(Metric):
    """Accuracy on mixed batches: ``lam * [argmax == y1] + (1 - lam) * [argmax == y2]`` per sample.

    With a plain target (validation, evaluation) it is categorical accuracy. ``'acc'`` resolves to this
    metric when the criterion is :meth:`Mixup.mixup_loss`. Outputs ``running_mixup_acc``, ``mixup_acc``
    and ``val_mixup_acc`` / ``test_mixup_acc``.
    """

    def __init__(self) -> None:
        super().__init__("mixup_acc")

    def process(self, *args: Any) -> torch.Tensor:
        state = args[0]
        predicted = state[torchbearer.Y_PRED].argmax(dim=1)
        targets = state[torchbearer.Y_TRUE]
        if not isinstance(targets, (tuple, list)):
            return (predicted == targets).float()
        first, second = targets
        lam = state[torchbearer.MIXUP_LAMBDA]
        return lam * (predicted == first).float() + (1 - lam) * (predicted == second).float()


__loss_map__[Mixup.mixup_loss.__name__] = MixupAcc
