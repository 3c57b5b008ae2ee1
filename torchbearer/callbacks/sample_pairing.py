"""SamplePairing: average each training image with another image of the batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torchbearer
from torchbearer.bases import Callback, cite
from torchbearer.callbacks.mixup import random_permutation

_SAMPLE_PAIRING_BIBTEX = """
@article{inoue2018data,
  title={Data Augmentation by Pairing Samples for Images Classification},
  author={Inoue, Hiroshi},
  journal={arXiv preprint arXiv:1801.02929},
  year={2018}
}
"""

Policy = Callable[[dict], bool]


@cite(_SAMPLE_PAIRING_BIBTEX)
class SamplePairing(Callback):
    """SamplePairing: on the batches a policy selects, replace ``X`` by ``(X + X[permutation]) / 2``.

    Targets are unchanged (each mixed image keeps its first image's label).

    Args:
        policy: A function of the state returning whether to pair this batch. ``None`` uses
            ``SamplePairing.default_policy(100, 800, 8, 2)``.

    Example:
        >>> pairing = SamplePairing(SamplePairing.default_policy(10, 100, 4, 1))
    """

    def __init__(self, policy: Optional[Policy] = None) -> None:
        self.policy = policy if policy is not None else SamplePairing.default_policy(100, 800, 8, 2)

    @staticmethod
    def default_policy(start_epoch: int, end_epoch: int, on_epochs: int, off_epochs: int) -> Policy:
        """The paper's schedule: from ``start_epoch`` to ``end_epoch`` (exclusive), alternate on and off.

        Pairing is on for ``on_epochs`` epochs, then off for ``off_epochs``, repeating, starting on
        at ``start_epoch``; it is off outside that range. The decision is made once per epoch.

        Args:
            start_epoch: First epoch with pairing.
            end_epoch: Epoch from which pairing stays off.
            on_epochs: Length of each on phase.
            off_epochs: Length of each off phase.

        Returns:
            A policy function of the state.
        """
        decided: dict = {}

        def policy(state: dict) -> bool:
            epoch = state[torchbearer.EPOCH]
            if decided.get("epoch") != epoch:
                in_range = start_epoch <= epoch < end_epoch
                decided["epoch"] = epoch
                decided["on"] = in_range and (epoch - start_epoch) % (on_epochs + off_epochs) < on_epochs
            return decided["on"]

        return policy

    def on_sample(self, state: dict) -> None:
        """Average the batch with a permutation of itself when the policy says so."""
        if self.policy(state):
            images = state[torchbearer.X]
            state[torchbearer.X] = (images + images[random_permutation(images)]) / 2
