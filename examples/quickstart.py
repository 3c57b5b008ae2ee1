"""Quickstart: a small CNN on scikit-learn's handwritten digits.

Trains with a progress bar and validation, prints the final metrics, and writes a checkpoint, a
CSV log, TensorBoard event files and a plot of the learning curves under ``runs/quickstart/``.
Run with ``--fast`` for a few-second smoke run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import CSVLogger, MostRecent, TensorBoard
from torchbearer.plotting import plot_history


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 8x8 digit images scaled to [0, 1], shaped [N, 1, 8, 8], and their labels."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(digits.target)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fast", action="store_true", help="two short epochs, for tests")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default="runs/quickstart")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # a model this small gains nothing from more threads, which only contend
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = digits_tensors()
    x_train, y_train, x_val, y_val = torchbearer.cv_utils.train_valid_splitter(images, labels, 0.2)

    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    callbacks = [
        CSVLogger(str(out / "log.csv")),
        MostRecent(str(out / "model.pt")),
        TensorBoard(log_dir=str(out / "tensorboard"), write_graph=False),  # view with: tensorboard --logdir runs
    ]
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks)
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    trial.with_val_data(x_val, y_val, batch_size=128, num_workers=0)

    history = trial.run(epochs=2 if args.fast else args.epochs)
    final = history[-1]
    print(f"final: loss={final['loss']:.4f} acc={final['acc']:.4f} val_loss={final['val_loss']:.4f} "
          f"val_acc={final['val_acc']:.4f}")  # fmt: skip
    plot_history(history, str(out / "history.png"), metrics=["loss", "acc"])
    print(f"wrote {out / 'model.pt'}, {out / 'log.csv'}, {out / 'tensorboard'} and {out / 'history.png'}")


if __name__ == "__main__":
    main()
