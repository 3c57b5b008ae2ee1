"""Choosing a learning rate with the range test (``torchbearer.callbacks.lr_finder``).

``find_lr(trial)`` trains for a number of batches while the learning rate grows exponentially from
``start_lr`` to ``end_lr``, records the smoothed loss at each rate, and stops early once the loss
blows up. It then puts the model, optimizer and history back as they were, so the same trial
trains for real afterwards. A good rate lies where the loss falls fastest, well before the
minimum: ``finder.suggestion()`` picks the steepest point.

Writes ``lr_finder.png`` (loss against learning rate) and ``history.png`` under
``runs/lr_finder/``.
"""

from __future__ import annotations

import torch
from common import digits, parse_args
from torch import nn

from torchbearer import Trial
from torchbearer.callbacks.lr_finder import find_lr
from torchbearer.cv_utils import train_valid_splitter
from torchbearer.plotting import plot_history


def main() -> None:
    args = parse_args(__doc__, "lr_finder")
    x_train, y_train, x_val, y_val = train_valid_splitter(*digits(limit=500 if args.fast else None), 0.2)

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # lr is replaced below
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], verbose=0 if args.fast else 1)
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    trial.with_val_data(x_val, y_val, batch_size=256, num_workers=0)

    # The test runs over the training batches (across epochs if needed), without validation.
    finder = find_lr(trial, start_lr=1e-4, end_lr=10, num_steps=40 if args.fast else 150)
    suggested = finder.suggestion()
    stopped = "stopped early: the loss diverged" if finder.diverged else "swept the whole range"
    print(f"range test: {len(finder.lrs)} batches, {stopped}; suggested lr = {suggested:.4g}")
    finder.plot(str(args.out / "lr_finder.png"))
    print(f"wrote {args.out / 'lr_finder.png'}")

    for group in optimizer.param_groups:
        group["lr"] = suggested
    history = trial.run(epochs=2 if args.fast else 15)  # the model starts from its original weights
    print(f"trained {len(history)} epochs at lr={suggested:.4g}: val_acc={history[-1]['val_acc']:.4f}")
    print(f"wrote {plot_history(history, str(args.out / 'history.png'), metrics=['loss', 'acc'])}")


if __name__ == "__main__":
    main()
