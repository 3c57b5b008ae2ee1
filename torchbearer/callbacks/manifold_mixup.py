"""Manifold Mixup: mix the hidden representations of a randomly chosen layer instead of the inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

import torch
from torch import nn

import torchbearer
from torchbearer.bases import Callback, cite
from torchbearer.callbacks.mixup import Mixup, draw_lambda, random_permutation, record_mix
from torchbearer.devices import unwrap_model

_MANIFOLD_MIXUP_BIBTEX = """
@inproceedings{verma2019manifold,
  title={Manifold Mixup: Better Representations by Interpolating Hidden States},
  author={Verma, Vikas and Lamb, Alex and Beckham, Christopher and Najafi, Amir and Mitliagkas, Ioannis
          and Lopez-Paz, David and Bengio, Yoshua},
  booktitle={International Conference on Machine Learning},
  pages={6438--6447},
  year={2019}
}
"""


def _walk(module: nn.Module, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, nn.Module, int]]:
    """Yield ``(name, layer, depth)`` for every descendant; names join child names with ``_``."""
    for child_name, child in module.named_children():
        name = f"{prefix}_{child_name}" if prefix else child_name
        yield name, child, depth
        yield from _walk(child, name, depth + 1)


@cite(_MANIFOLD_MIXUP_BIBTEX)
class ManifoldMixup(Callback):
    """Manifold Mixup: each training step, mix the output of one randomly chosen layer.

    Choose the candidate layers fluently; by default they are the model's top-level children. At
    ``on_start`` a forward hook is attached to each candidate (and removed at ``on_end``). Each
    training batch draws ``lam`` (as :class:`Mixup` does), a permutation and one candidate layer,
    whose output becomes ``lam * out + (1 - lam) * out[permutation]`` while the layer is in training
    mode. Targets become ``(y, y[permutation])``; use :meth:`Mixup.mixup_loss` as the criterion.

    Layer names join ``named_children`` names across depths with ``_`` (``'convs_0'``,
    ``'block1_bn'``).

    Args:
        alpha: Concentration of the ``Beta(alpha, alpha)`` distribution of ``lam``; ``<= 0`` gives 1.
        lam: A fixed mixing coefficient, or ``ManifoldMixup.RANDOM`` to draw one per batch.

    Example:
        >>> mixup = ManifoldMixup(alpha=2.0).at_depth(1).with_layer_type_filter([nn.BatchNorm2d, nn.ReLU])
        >>> mixup.get_selected_layers(model)  # model has a top-level nn.Sequential named `convs`
        ['convs_0', 'convs_3', 'convs_6']
    """

    RANDOM: float = Mixup.RANDOM

    def __init__(self, alpha: float = 1.0, lam: float = RANDOM) -> None:
        self.alpha = alpha
        self.lam = lam
        self._layer_names: Optional[list[str]] = None
        self._excluded_names: tuple[str, ...] = ()
        self._excluded_types: tuple[type, ...] = ()
        self._depth: Optional[int] = 0
        self._hooks: list[Any] = []
        self._candidates: list[nn.Module] = []
        self._chosen: Optional[nn.Module] = None
        self._step_lambda: float = 1.0
        self._permutation: Optional[torch.Tensor] = None

    def for_layers(self, layers: Union[str, Iterable[str]]) -> ManifoldMixup:
        """Use exactly the named layers (at any depth; the filters still apply). Returns self."""
        self._layer_names = [layers] if isinstance(layers, str) else list(layers)
        return self

    def with_layer_filter(self, layer_filter: Iterable[str] = ()) -> ManifoldMixup:
        """Exclude the named layers. Returns self."""
        self._excluded_names = tuple(layer_filter)
        return self

    def with_layer_type_filter(self, layer_types: Iterable[type] = ()) -> ManifoldMixup:
        """Exclude layers that are instances of any of these module types. Returns self."""
        self._excluded_types = tuple(layer_types)
        return self

    def at_depth(self, N: Optional[int]) -> ManifoldMixup:  # noqa: N803 (0.5 argument name)
        """Take candidates at depth ``N``: 0 = top-level children, 1 = their children, None = all. Returns self."""
        self._depth = N
        return self

    def _is_candidate(self, name: str, layer: nn.Module, depth: int) -> bool:
        if self._layer_names is not None:
            if name not in self._layer_names:
                return False
        elif self._depth is not None and depth != self._depth:
            return False
        return name not in self._excluded_names and not isinstance(layer, self._excluded_types)

    def _selected(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        layers = _walk(unwrap_model(model))
        return [(name, layer) for name, layer, depth in layers if self._is_candidate(name, layer, depth)]

    def get_selected_layers(self, model: nn.Module) -> list[str]:
        """Names of the layers of ``model`` that would be mixed, in module order.

        Names are taken inside ``torch.compile`` / DataParallel wrappers, as the user built the model.
        """
        return [name for name, _ in self._selected(model)]

    def _mix_output(self, layer: nn.Module, inputs: Any, output: Any) -> Optional[torch.Tensor]:
        if layer is not self._chosen or not layer.training:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"ManifoldMixup can only mix layers that return a tensor, but {type(layer).__name__} returned "
                f"{type(output).__name__}; exclude it with with_layer_filter or with_layer_type_filter."
            )
        return self._step_lambda * output + (1 - self._step_lambda) * output[self._permutation]

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks, self._candidates, self._chosen = [], [], None

    def on_start(self, state: dict) -> None:
        """Attach the mixing hook to every selected layer of ``state[MODEL]``.

        Raises:
            ValueError: If the selection matches no layer of the model.
        """
        self._remove_hooks()
        model = state[torchbearer.MODEL]
        selected = self._selected(model)
        if not selected:
            available = [name for name, _, _ in _walk(unwrap_model(model))]
            raise ValueError(
                f"ManifoldMixup selected no layers (for_layers={self._layer_names}, depth={self._depth}, "
                f"excluded names={list(self._excluded_names)}, excluded types={list(self._excluded_types)}); "
                f"the model's layers are {available}."
            )
        self._candidates = [layer for _, layer in selected]
        self._hooks = [layer.register_forward_hook(self._mix_output) for layer in self._candidates]

    def on_sample(self, state: dict) -> None:
        """Draw ``lam``, a permutation and the layer to mix on this step; pair the targets."""
        self._step_lambda = draw_lambda(self.alpha) if self.lam == ManifoldMixup.RANDOM else self.lam
        self._permutation = random_permutation(state[torchbearer.X])
        # The layer index is drawn from torch's CPU generator: a host-side draw, no device sync.
        self._chosen = self._candidates[torch.randint(len(self._candidates), (), device="cpu").item()]
        record_mix(state, self._step_lambda, self._permutation)

    def on_step_training(self, state: dict) -> None:
        """Stop mixing once the step is done, so no other forward pass is mixed."""
        self._chosen = None

    def on_end(self, state: dict) -> None:
        """Detach the hooks from the model."""
        self._remove_hooks()
