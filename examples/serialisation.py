"""Saving, loading and resuming: checkpoints that ``torch.load`` reads safely.

Session 1 trains for a few epochs with two checkpointers: ``MostRecent`` keeps the whole trial
(model, optimizer, history, callback states) after every epoch, and ``Best`` keeps only the model
weights of the epoch with the best validation accuracy. The files hold plain types only (tensors,
numbers, strings, lists, dicts), so ``torch.load(path)`` with PyTorch's default
``weights_only=True`` reads them: loading a checkpoint cannot run code hidden in the file.

Session 2 builds everything afresh, as a new process would, loads the checkpoint into the new
Trial and continues: ``run(epochs)`` counts from the epochs already in the loaded history. The
best weights load into a bare model with no torchbearer involved.

Writes ``checkpoint.pt``, ``best_model.pt`` and ``resumed_history.png`` under ``runs/serialisation/``.
"""

from __future__ import annotations

import torch
from common import digits, epoch_axis, new_figure, parse_args, save
from matplotlib.figure import Figure
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import Best, MostRecent
from torchbearer.cv_utils import train_valid_splitter
from torchbearer.io import safe_load


def make_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def make_trial(out, data, verbose: int) -> Trial:
    """The same setup each session: in a real project this is the code shared by both runs."""
    model = make_model()
    checkpointers = [
        MostRecent(str(out / "checkpoint.pt")),
        Best(str(out / "best_model.pt"), save_model_params_only=True, monitor="val_acc"),
    ]
    trial = Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), nn.CrossEntropyLoss(),
        metrics=["acc", "loss"], callbacks=checkpointers, verbose=verbose,
    )  # fmt: skip
    x_train, y_train, x_val, y_val = data
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    return trial.with_val_data(x_val, y_val, batch_size=256, num_workers=0)


def plot_resumed_history(history: list, first_epochs: int) -> Figure:
    """Validation accuracy per epoch, with a line where the first session saved and the second resumed."""
    figure, (axes,) = new_figure(size=(6, 4))
    axes.plot(range(len(history)), [record["val_acc"] for record in history], "o-", label="val_acc")
    axes.axvline(first_epochs - 0.5, color="k", linestyle="--", label="saved, then resumed")
    epoch_axis(axes)
    axes.set_ylabel("validation accuracy")
    axes.legend()
    return figure


def main() -> None:
    args = parse_args(__doc__, "serialisation")
    data = train_valid_splitter(*digits(limit=500 if args.fast else None), 0.2)
    first_epochs, total_epochs = (2, 4) if args.fast else (5, 12)
    verbose = 0 if args.fast else 1

    # Session 1: train and checkpoint.
    make_trial(args.out, data, verbose).run(epochs=first_epochs)

    # What is in the file: only plain types, so the default (weights_only=True) torch.load accepts it.
    checkpoint = torch.load(args.out / "checkpoint.pt")
    print(f"checkpoint keys: {sorted(checkpoint)}")
    print(f"epochs in the saved history: {len(checkpoint[torchbearer.HISTORY])}")  # a StateKey is its string
    # torchbearer.io.safe_load does the same, and reports a truncated or corrupt file by name.
    assert safe_load(args.out / "checkpoint.pt").keys() == checkpoint.keys()

    # Session 2: a fresh Trial picks up where the first one stopped.
    trial = make_trial(args.out, data, verbose)
    trial.load_state_dict(checkpoint)
    history = trial.run(epochs=total_epochs)  # runs epochs first_epochs .. total_epochs - 1
    print(f"resumed at epoch {first_epochs}; the history now has {len(history)} epochs")
    print(f"final val_acc={history[-1]['val_acc']:.4f}")

    # The best weights are a plain model state dict: load them without torchbearer.
    best_model = make_model()
    best_model.load_state_dict(torch.load(args.out / "best_model.pt"))
    x_val, y_val = data[2], data[3]
    with torch.no_grad():
        best_accuracy = (best_model(x_val).argmax(dim=1) == y_val).float().mean().item()
    print(f"best checkpoint: val_acc={best_accuracy:.4f} (best in history: {max(r['val_acc'] for r in history):.4f})")

    save(plot_resumed_history(history, first_epochs), args.out / "resumed_history.png")


if __name__ == "__main__":
    main()
