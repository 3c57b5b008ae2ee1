"""Weight decay as a loss term: ``rate * ||param||_p`` added to the training loss of every batch."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from torchbearer.bases import Callback
from torchbearer.callbacks.gradient_clipping import reusable_params
from torchbearer.state import LOSS, MODEL


class WeightDecay(Callback):
    """Add ``rate * ||param||_p`` for each parameter to the training loss (in ``on_criterion``).

    The norm is the plain p-norm of the flattened parameter, not its square: with ``p=2`` and
    ``rate=1`` a parameter ``[2.0]`` adds 2. Validation losses are not changed.

    Args:
        rate: The factor of the penalty.
        p: The norm's order (1 for L1, 2 for L2).
        params: The parameters to penalise; default: every parameter of the model.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[WeightDecay(rate=1e-4, p=1)])  # doctest: +SKIP
    """

    def __init__(self, rate: float = 5e-4, p: float = 2, params: Iterable[torch.Tensor] | None = None) -> None:
        self.rate = rate
        self.p = p
        self.params = reusable_params(params)

    def on_start(self, state: dict) -> None:
        if self.params is None:
            self.params = list(state[MODEL].parameters())

    def on_criterion(self, state: dict) -> None:
        penalty = sum(torch.linalg.vector_norm(param, ord=self.p) for param in self.params)
        # Out of place, so a leaf loss (a criterion's fresh tensor) works too and no caller's tensor changes.
        state[LOSS] = state[LOSS] + self.rate * penalty


class L1WeightDecay(WeightDecay):
    """:class:`WeightDecay` with the L1 norm: adds ``rate * sum(|param|)``.

    Args:
        rate: The factor of the penalty.
        params: The parameters to penalise; default: every parameter of the model.
    """

    def __init__(self, rate: float = 5e-4, params: Iterable[torch.Tensor] | None = None) -> None:
        super().__init__(rate=rate, p=1, params=params)


class L2WeightDecay(WeightDecay):
    """:class:`WeightDecay` with the L2 norm: adds ``rate * ||param||_2`` (not squared).

    Args:
        rate: The factor of the penalty.
        params: The parameters to penalise; default: every parameter of the model.
    """

    def __init__(self, rate: float = 5e-4, params: Iterable[torch.Tensor] | None = None) -> None:
        super().__init__(rate=rate, p=2, params=params)
