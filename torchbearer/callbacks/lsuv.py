"""LSUV: layer-sequential unit-variance initialisation.

Runs once, before training, so its per-layer ``.item()`` reads (one per attempt) are not a
per-batch cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import nn

WeightLambda = Callable[[nn.Module], torch.Tensor]

_LSUV_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _default_weight(module: nn.Module) -> torch.Tensor:
    return module.weight


class LSUV:
    """Layer-sequential unit-variance initialisation (Mishkin and Matas, 2016).

    Every ``Linear`` / ``Conv`` layer, in module order, is optionally given orthonormal weights,
    then its weight is rescaled by ``needed_std / std(output)`` (the output measured on a batch of
    data) until the output's standard deviation is within ``std_tol`` of ``needed_std`` or
    ``max_attempts`` rescalings were made. The model runs in eval mode and gets its mode back.

    Example:
        >>> model = LSUV().init_model(model, next(iter(loader))[0])
    """

    def init_model(
        self,
        model: nn.Module,
        data: Any,
        weight_lambda: Optional[WeightLambda] = None,
        needed_std: float = 1.0,
        std_tol: float = 0.1,
        max_attempts: int = 10,
        do_orthonorm: bool = True,
    ) -> nn.Module:
        """Initialise ``model`` in place and return it.

        Args:
            model: The model to initialise.
            data: A batch the model accepts (``model(data)``), representative of the training data.
            weight_lambda: Returns the tensor to rescale for a layer; defaults to ``layer.weight``.
            needed_std: Target standard deviation of each layer's output.
            std_tol: Accepted distance from ``needed_std``.
            max_attempts: Most rescalings per layer.
            do_orthonorm: Whether to start every layer from orthonormal weights.

        Returns:
            The same model.
        """
        weight_of = weight_lambda if weight_lambda is not None else _default_weight
        layers = [module for module in model.modules() if isinstance(module, _LSUV_LAYERS)]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            if do_orthonorm:
                for layer in layers:
                    nn.init.orthogonal_(weight_of(layer))
            for layer in layers:
                _scale_layer(model, layer, data, weight_of(layer), needed_std, std_tol, max_attempts)
        model.train(was_training)
        return model


def _output_std(model: nn.Module, layer: nn.Module, data: Any) -> float:
    """Run the model on ``data`` and return the standard deviation of ``layer``'s output."""
    captured: dict[str, float] = {}

    def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        captured["std"] = output.std().item()  # once per attempt, at initialisation only

    handle = layer.register_forward_hook(record)
    try:
        model(data)
    finally:
        handle.remove()
    return captured["std"]


def _scale_layer(
    model: nn.Module,
    layer: nn.Module,
    data: Any,
    weight: torch.Tensor,
    needed_std: float,
    std_tol: float,
    max_attempts: int,
) -> None:
    """Rescale ``weight`` until ``layer``'s output std is within ``std_tol`` of ``needed_std``."""
    for _ in range(max_attempts):
        std = _output_std(model, layer, data)
        if abs(std - needed_std) <= std_tol or std == 0:
            return
        weight.mul_(needed_std / std)
