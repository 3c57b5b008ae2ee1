"""Looking inside trained networks: class appearance models (Simonyan et al., 2013)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn, optim

import torchbearer
from torchbearer.bases import cite
from torchbearer.callbacks.imaging.imaging import ImagingCallback

RANDOM = -10
"""``target`` value for :class:`ClassAppearanceModel`: pick a random class each time."""

_SIMONYAN = """
@article{simonyan2013deep,
  title={Deep inside convolutional networks: Visualising image classification models and saliency maps},
  author={Simonyan, Karen and Vedaldi, Andrea and Zisserman, Andrew},
  journal={arXiv preprint arXiv:1312.6034},
  year={2013}
}
"""


class _ImageModel(nn.Module):
    """The inner trial's model: a learnable image fed through the (frozen) network being inspected."""

    def __init__(self, input_size: Sequence[int], network: Any, in_transform: Callable | None) -> None:
        super().__init__()
        self.image_logits = nn.Parameter(torch.zeros(*input_size))
        # Kept out of the module tree so the inner trial never moves, casts or saves the user's network.
        vars(self)["network"] = network
        self.in_transform = in_transform

    def image(self) -> torch.Tensor:
        """The current image, each pixel in (0, 1)."""
        return torch.sigmoid(self.image_logits)

    def forward(self, _unused_input: Any, state: dict) -> Any:
        from torchbearer.calling import call_model

        image = self.image()
        if self.in_transform is not None:
            image = self.in_transform(image)
        return call_model(state, self.network, image.unsqueeze(0))


def _default_optimizer(params: Any) -> optim.Optimizer:
    return optim.Adam(params, lr=0.5)


@cite(_SIMONYAN)
class ClassAppearanceModel(ImagingCallback):
    """Learn the image that the model thinks looks most like a class.

    Once per epoch (at the first step chosen with ``on_train``/``on_val``/``on_test``), an image is
    optimised for ``steps`` steps by an inner :class:`~torchbearer.Trial` to maximise the target
    class's logit minus an L2 penalty: ``loss = -logit[target] + decay * ||image||^2``. The image
    is ``sigmoid`` of a parameter that starts at zero, so its pixels stay in (0, 1). The model is
    put in eval mode meanwhile and its parameters are not changed (nor their gradients).

    Args:
        nclasses: Number of classes the model predicts.
        input_size: Shape of one input image, e.g. ``(3, 32, 32)``; an int ``n`` (as 0.5 accepted) is the
            shape ``(n,)``, an input of ``n`` features.
        optimizer_factory: Builds the optimizer from the image parameter.
        steps: Optimisation steps per image.
        logit_key: State key of the logits in the inner trial (default: the model's output).
        target: Class to visualise, or ``RANDOM`` for a random class each time.
        decay: Weight of the L2 penalty on the image.
        verbose: Verbosity of the inner trial.
        in_transform: Applied to the image before the model sees it (e.g. the data normalisation).
        transform: Applied to the returned image before the handlers.

    Example:
        >>> cam = ClassAppearanceModel(10, (3, 32, 32), target=3)  # doctest: +SKIP
        >>> cam.on_val().to_file('class3_{epoch}.png')  # doctest: +SKIP
    """

    def __init__(
        self,
        nclasses: int,
        input_size: Sequence[int] | int,
        optimizer_factory: Callable[[Any], optim.Optimizer] = _default_optimizer,
        steps: int = 256,
        logit_key: str = torchbearer.PREDICTION,
        target: int = RANDOM,
        decay: float = 0.01,
        verbose: int = 0,
        in_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(transform=transform)
        self.nclasses = nclasses
        self.input_size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        self.optimizer_factory = optimizer_factory
        self.steps = steps
        self.logit_key = logit_key
        self.target = target
        self.decay = decay
        self.verbose = verbose
        self.in_transform = in_transform
        self._target_key: str | None = None
        self._last_epoch: Any = None

    def target_to_key(self, key: str) -> ClassAppearanceModel:
        """Also store the chosen class index (a one-element tensor) in ``state[key]``."""
        self._target_key = key
        return self

    def on_start(self, state: dict) -> None:
        self._last_epoch = None

    def _choose_target(self, device: Any) -> torch.Tensor:
        if self.target == RANDOM:
            return torch.randint(self.nclasses, (1,), device=device)
        return torch.tensor([self.target], device=device)

    def _criterion(self, image_model: _ImageModel, target: torch.Tensor) -> Callable[[dict], torch.Tensor]:
        def loss(state: dict) -> torch.Tensor:
            logits = state[self.logit_key]
            penalty = image_model.image().pow(2).sum()
            return -logits[0].index_select(0, target).sum() + self.decay * penalty

        return loss

    def _optimise(self, model: Any, device: Any, dtype: Any, target: torch.Tensor) -> torch.Tensor:
        from torchbearer.trial import Trial

        image_model = _ImageModel(self.input_size, model, self.in_transform).to(device=device, dtype=dtype)
        optimizer = self.optimizer_factory(image_model.parameters())
        inner = Trial(image_model, optimizer, self._criterion(image_model, target), verbose=self.verbose)
        inner.for_train_steps(self.steps).to(device, dtype).run(1)
        return image_model.image().detach()

    def on_batch(self, state: dict) -> torch.Tensor | None:
        epoch = state.get(torchbearer.EPOCH)
        if epoch == self._last_epoch:
            return None
        self._last_epoch = epoch
        model = state[torchbearer.MODEL]
        device = state.get(torchbearer.DEVICE, "cpu")
        target = self._choose_target(device)
        if self._target_key is not None:
            state[self._target_key] = target
        was_training = model.training
        parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        model.eval()
        for parameter in parameters:
            parameter.requires_grad_(False)
        try:
            with torch.enable_grad():
                return self._optimise(model, device, state.get(torchbearer.DATA_TYPE, torch.float32), target)
        finally:
            for parameter in parameters:
                parameter.requires_grad_(True)
            if was_training:
                model.train()
