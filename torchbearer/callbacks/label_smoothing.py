"""Label smoothing: soften one-hot training targets towards the uniform distribution."""

from __future__ import annotations

import torchbearer
from torchbearer.bases import Callback, cite
from torchbearer.callbacks.mixup import to_one_hot

_LABEL_SMOOTHING_BIBTEX = """
@inproceedings{szegedy2016rethinking,
  title={Rethinking the Inception Architecture for Computer Vision},
  author={Szegedy, Christian and Vanhoucke, Vincent and Ioffe, Sergey and Shlens, Jon and Wojna, Zbigniew},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
  pages={2818--2826},
  year={2016}
}
"""


@cite(_LABEL_SMOOTHING_BIBTEX)
class LabelSmoothingRegularisation(Callback):
    """Replace training targets by ``(1 - epsilon) * onehot(y) + epsilon / num_classes``.

    Class-index targets are one-hot encoded first (2-D targets are used as given); validation
    targets become one-hot floats. The targets are then soft, so use a multi-label loss such as
    ``nn.BCEWithLogitsLoss``; ``'acc'`` then resolves to binary accuracy, so add ``'cat_acc'`` for
    categorical accuracy.

    Args:
        epsilon: Probability mass moved from the true class to the uniform distribution.
        classes: Number of classes; needed when targets are class indices.

    Example:
        >>> smoothing = LabelSmoothingRegularisation(0.1, classes=10)
        >>> trial = Trial(model, optimizer, nn.BCEWithLogitsLoss(), metrics=['cat_acc'], callbacks=[smoothing])
    """

    def __init__(self, epsilon: float, classes: int = -1) -> None:
        self.epsilon = epsilon
        self.classes = classes

    def on_sample(self, state: dict) -> None:
        """Smooth the training targets."""
        targets = to_one_hot(state[torchbearer.Y_TRUE], self.classes, type(self).__name__)
        state[torchbearer.Y_TRUE] = (1 - self.epsilon) * targets + self.epsilon / targets.size(1)

    def on_sample_validation(self, state: dict) -> None:
        """One-hot the validation targets so the same loss applies."""
        if state.get(torchbearer.Y_TRUE) is not None:
            state[torchbearer.Y_TRUE] = to_one_hot(state[torchbearer.Y_TRUE], self.classes, type(self).__name__)
