"""Gradient clipping between the backward pass and the optimizer step."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from torchbearer import precision
from torchbearer.bases import Callback
from torchbearer.state import MODEL


def reusable_params(params: Any) -> Any:
    """Return ``params`` unchanged, unless it is a one-shot iterator (e.g. ``model.parameters()``).

    An iterator is exhausted after one use, so callbacks that visit parameters every batch turn it
    into a list. Lists, tensors and other re-iterable objects are kept as given.
    """
    return list(params) if isinstance(params, Iterator) else params


def trainable_params(state: dict) -> list[torch.nn.Parameter]:
    """The parameters of the state's model that require gradients."""
    return [param for param in state[MODEL].parameters() if param.requires_grad]


class _GradientClipper(Callback):
    """Shared by the clipping callbacks: which parameters, and when to clip (once per optimizer step,
    on the true, unscaled gradients when fp16 loss scaling is on)."""

    def __init__(self, params: Iterable[torch.Tensor] | None) -> None:
        self.params = reusable_params(params)

    def on_start(self, state: dict) -> None:
        if self.params is None:
            self.params = trainable_params(state)

    def on_backward(self, state: dict) -> None:
        if not precision.ends_accumulation(state):  # clip the accumulated gradients, once per step
            return
        precision.unscale_gradients(state)
        self._clip()

    def _clip(self) -> None:
        raise NotImplementedError


class GradientNormClipping(_GradientClipper):
    """Rescale gradients so that their total norm is at most ``max_norm``, after every backward pass.

    Uses :func:`torch.nn.utils.clip_grad_norm_` in ``on_backward``, i.e. before the optimizer steps.

    Args:
        max_norm: The largest allowed total norm.
        norm_type: The p of the p-norm (``float('inf')`` for the largest absolute value).
        params: The parameters to clip; default: every model parameter that requires gradients.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[GradientNormClipping(1.0)])  # doctest: +SKIP
    """

    def __init__(self, max_norm: float, norm_type: float = 2, params: Iterable[torch.Tensor] | None = None) -> None:
        super().__init__(params)
        self.max_norm = max_norm
        self.norm_type = norm_type

    def _clip(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm, norm_type=self.norm_type)


class GradientClipping(_GradientClipper):
    """Clamp every gradient element to ``[-clip_value, clip_value]``, after every backward pass.

    Uses :func:`torch.nn.utils.clip_grad_value_` in ``on_backward``, i.e. before the optimizer steps.

    Args:
        clip_value: The largest allowed absolute value of a gradient element.
        params: The parameters to clip; default: every model parameter that requires gradients.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[GradientClipping(0.5)])  # doctest: +SKIP
    """

    def __init__(self, clip_value: float, params: Iterable[torch.Tensor] | None = None) -> None:
        super().__init__(params)
        self.clip_value = clip_value

    def _clip(self) -> None:
        torch.nn.utils.clip_grad_value_(self.params, self.clip_value)
