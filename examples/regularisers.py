"""Regularisers as callbacks: Mixup, CutMix, Cutout and label smoothing against a plain baseline.

Each regulariser is one callback that rewrites the training batch at ``on_sample``; some also
need a matching loss:

* Mixup and CutMix (with ``mixup_loss=True``) turn the targets into pairs ``(y, y[perm])`` mixed by
  ``MIXUP_LAMBDA``, so they train with ``Mixup.mixup_loss``; ``'acc'`` then reports ``mixup_acc``.
* Cutout only changes the images: the plain cross-entropy stays.
* Label smoothing makes soft one-hot targets, so it trains with ``BCEWithLogitsLoss``, and
  ``'cat_acc'`` gives categorical accuracy (``'acc'`` would resolve to binary accuracy for BCE).

All five train the same CNN from the same initial weights on scikit-learn's digits and are
compared on the same held-out test digits, predicted with ``trial.predict()``. Digits is small
and easy, so expect differences of a point or two: this shows how to set each one up, not which
is best.

Prints a table and writes ``test_accuracy.png`` under ``runs/regularisers/``.
"""

from __future__ import annotations

import copy
import time

import torch
from common import digits, new_figure, parse_args, save, small_cnn
from matplotlib.figure import Figure
from torch import nn

from torchbearer import Trial
from torchbearer.callbacks import CutMix, Cutout, LabelSmoothingRegularisation, Mixup
from torchbearer.cv_utils import train_valid_splitter

# name -> (criterion, metrics, callbacks)
SETUPS = {
    "baseline": (nn.CrossEntropyLoss(), ["acc", "loss"], []),
    "mixup": (Mixup.mixup_loss, ["acc", "loss"], [Mixup(alpha=0.4)]),
    "cutmix": (Mixup.mixup_loss, ["acc", "loss"], [CutMix(alpha=1.0, mixup_loss=True)]),
    "cutout": (nn.CrossEntropyLoss(), ["acc", "loss"], [Cutout(n_holes=1, length=3)]),
    "label smoothing": (nn.BCEWithLogitsLoss(), ["cat_acc", "loss"], [LabelSmoothingRegularisation(0.1, classes=10)]),
}


def train_and_test(name: str, initial: nn.Module, data: tuple, epochs: int) -> dict:
    """Train a copy of ``initial`` with one setup and return its final loss and test accuracy."""
    x_train, y_train, x_test, y_test = data
    criterion, metric_names, extra_callbacks = SETUPS[name]
    model = copy.deepcopy(initial)
    trial = Trial(
        model, torch.optim.Adam(model.parameters(), lr=3e-3), criterion, metrics=metric_names,
        callbacks=extra_callbacks, verbose=0,
    )  # fmt: skip
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    trial.with_test_data(x_test, batch_size=256, num_workers=0)
    start = time.perf_counter()
    history = trial.run(epochs=epochs)
    seconds = time.perf_counter() - start
    logits = trial.predict(verbose=0)  # regularisers act on training batches only, never on predictions
    test_accuracy = (logits.argmax(dim=1) == y_test).float().mean().item()
    return {"loss": history[-1]["loss"], "test_acc": test_accuracy, "seconds": seconds}


def plot_test_accuracy(results: dict, epochs: int) -> Figure:
    """A bar per regulariser: its test accuracy, on an axis from 0 (so bar heights compare honestly)."""
    figure, (axes,) = new_figure(size=(7, 4))
    names = list(results)
    accuracies = [results[name]["test_acc"] for name in names]
    bars = axes.bar(names, accuracies, color="tab:blue")
    axes.bar_label(bars, labels=[f"{accuracy:.3f}" for accuracy in accuracies])
    axes.set_ylim(0, 1.1)  # room above a bar of 1.0 for its label
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("test accuracy")
    axes.set_title(f"the same CNN after {epochs} epoch{'' if epochs == 1 else 's'}")
    return figure


def main() -> None:
    args = parse_args(__doc__, "regularisers")
    images, labels = digits(limit=400 if args.fast else None)
    data = train_valid_splitter(images, labels, 0.25)  # x_train, y_train, x_test, y_test
    initial = small_cnn()
    epochs = 1 if args.fast else 30

    results = {name: train_and_test(name, initial, data, epochs) for name in SETUPS}

    print(f"{'regulariser':<16} {'final loss':>10} {'test acc':>9} {'seconds':>8}")
    for name, result in results.items():
        print(f"{name:<16} {result['loss']:>10.4f} {result['test_acc']:>9.4f} {result['seconds']:>8.2f}")

    save(plot_test_accuracy(results, epochs), args.out / "test_accuracy.png")


if __name__ == "__main__":
    main()
