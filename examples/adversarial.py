"""Adversarial examples: the fast gradient sign method (FGSM) against a digits classifier.

FGSM (Goodfellow et al., 2015) moves every pixel of an input by ``epsilon`` in the direction that
increases the loss: ``x + epsilon * sign(grad_x loss)``. Here it is a callback that rewrites each
evaluation batch at ``on_sample_validation``, before the model sees it, so ``trial.evaluate()``
reports the accuracy under attack. Evaluation runs without gradients, so the callback turns them
back on (``torch.enable_grad()``) just for the input gradient.

Writes ``accuracy_vs_epsilon.png`` and ``examples.png`` (the same digits at each epsilon) under
``runs/adversarial/``.
"""

from __future__ import annotations

import torch
from common import digits, new_figure, parse_args, save, show_images, small_cnn
from torch import nn

import torchbearer
from torchbearer import Callback, Trial
from torchbearer.cv_utils import train_valid_splitter


class FGSM(Callback):
    """Replace evaluation inputs by their fast-gradient-sign perturbation of size ``epsilon`` (0: off)."""

    def __init__(self, epsilon: float = 0.0) -> None:
        self.epsilon = epsilon
        self.last_batch: torch.Tensor | None = None

    def on_sample_validation(self, state: dict) -> None:
        if self.epsilon == 0:
            return
        images = state[torchbearer.X].detach().requires_grad_(True)
        with torch.enable_grad():  # evaluation runs under no_grad; the attack needs one gradient
            loss = state[torchbearer.CRITERION](state[torchbearer.MODEL](images), state[torchbearer.Y_TRUE])
            (gradient,) = torch.autograd.grad(loss, images)
        state[torchbearer.X] = (images + self.epsilon * gradient.sign()).clamp(0, 1).detach()
        self.last_batch = state[torchbearer.X]


def main() -> None:
    args = parse_args(__doc__, "adversarial")
    images, labels = digits(limit=500 if args.fast else None)
    x_train, y_train, x_val, y_val = train_valid_splitter(images, labels, 0.2)

    attack = FGSM()  # off while training
    model = small_cnn()
    trial = Trial(
        model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        callbacks=[attack], verbose=0 if args.fast else 1,
    )  # fmt: skip
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    # shuffle=False: every evaluation sees the same digits in the same order, for the example figure.
    trial.with_val_data(x_val, y_val, batch_size=len(y_val), shuffle=False, num_workers=0)
    trial.run(epochs=2 if args.fast else 15)

    epsilons = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    accuracies, examples = [], []
    for epsilon in epsilons:
        attack.epsilon = epsilon
        accuracies.append(trial.evaluate(verbose=0)["val_acc"])
        examples.append(x_val[:8] if epsilon == 0 else attack.last_batch[:8])
        print(f"epsilon={epsilon:.2f} val_acc={accuracies[-1]:.4f}")

    figure, (axes,) = new_figure()
    axes.plot(epsilons, accuracies, "o-")
    axes.set_xlabel("epsilon")
    axes.set_ylabel("validation accuracy")
    axes.set_ylim(0, 1)
    axes.set_title("accuracy under FGSM attack")
    save(figure, args.out / "accuracy_vs_epsilon.png")

    figure, (axes,) = new_figure(size=(5, 5))
    show_images(axes, torch.cat(examples), f"rows: epsilon = {', '.join(map(str, epsilons))}")
    save(figure, args.out / "examples.png")


if __name__ == "__main__":
    main()
