"""The history: one dict of metrics per epoch, as a table, and replayed to callbacks later.

``trial.run`` returns the history, a list with one dictionary of plain Python numbers per epoch
(``pandas.DataFrame.from_records(history)`` turns it into a data frame if you use pandas). The
history is part of ``trial.state_dict()``, so a loaded trial has it too, and
``trial.replay(callbacks=[...])`` drives callbacks through it as if the training were happening
again, without touching the model or the data: here it writes a CSV log that was not configured
during training and redraws the progress bars.

Writes ``history.csv`` (from the replay) and ``history.png`` under ``runs/history_replay/``.
"""

from __future__ import annotations

import torch
from common import digits, parse_args
from torch import nn

import torchbearer
from torchbearer import Trial, callbacks
from torchbearer.callbacks import CSVLogger
from torchbearer.cv_utils import train_valid_splitter
from torchbearer.plotting import plot_history


def make_trial() -> Trial:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    return Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], verbose=0)


def print_table(history: list[dict], columns: list[str]) -> None:
    print(" | ".join(f"{name:>8}" for name in ["epoch", *columns]))
    for epoch, record in enumerate(history):
        print(" | ".join([f"{epoch:>8d}", *(f"{record[column]:>8.4f}" for column in columns)]))


def main() -> None:
    args = parse_args(__doc__, "history_replay")
    x_train, y_train, x_val, y_val = train_valid_splitter(*digits(limit=500 if args.fast else None), 0.2)
    trial = make_trial()
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    trial.with_val_data(x_val, y_val, batch_size=256, num_workers=0)
    history = trial.run(epochs=3 if args.fast else 20)

    print(f"history[0] = {history[0]}")
    print_table(history, ["loss", "acc", "val_loss", "val_acc"])

    # Later, elsewhere: a fresh trial with the saved state has the history, and can replay it.
    restored = make_trial().load_state_dict(trial.state_dict())

    # A callback written with the decorator API sees each epoch's metrics at on_end_epoch, as in training.
    best = {"val_acc": 0.0, "epoch": -1}

    @callbacks.on_end_epoch
    def track_best(state: dict) -> None:
        metrics = state[torchbearer.METRICS]
        if metrics["val_acc"] > best["val_acc"]:
            best.update(val_acc=metrics["val_acc"], epoch=state[torchbearer.EPOCH])

    # verbose=2 redraws a progress bar per pass (on stderr); one_batch=True calls the batch hooks once per pass.
    restored.replay(callbacks=[CSVLogger(str(args.out / "history.csv")), track_best], verbose=2, one_batch=True)
    replayed = len(restored.state[torchbearer.HISTORY])
    print(f"replayed {replayed} epochs: best val_acc={best['val_acc']:.4f} at epoch {best['epoch']}")
    print(f"wrote {args.out / 'history.csv'}")
    print(f"wrote {plot_history(history, str(args.out / 'history.png'), metrics=['loss', 'acc'])}")


if __name__ == "__main__":
    main()
