"""A custom batch loader: data that does not come as ``(x, y)`` pairs.

By default a Trial expects every batch to be an ``(inputs, targets)`` pair. Here the data set
yields dictionaries (``{'pixels': ..., 'label': ..., 'id': ...}``), as many real data sets do.
``trial.with_loader(loader)`` replaces the built-in loading for every pass (training, validation
and prediction): the loader takes the next batch from ``state[ITERATOR]``, moves it to the
trial's device, and puts its parts wherever they belong in the state, including a key of our own
for the sample ids. A callback then uses those ids to list the validation digits the model gets
wrong, and predictions work on unlabelled dictionaries too.

Writes ``mistakes.png`` (misclassified validation digits) and ``history.png`` under
``runs/custom_loader/``.
"""

from __future__ import annotations

import torch
from common import digits, new_figure, parse_args, save
from torch import nn
from torch.utils.data import DataLoader, Dataset

import torchbearer
from torchbearer import Callback, Trial, callbacks
from torchbearer.plotting import plot_history

SAMPLE_ID = torchbearer.state_key("sample_id")


class DigitRecords(Dataset):
    """Digits as records: flat pixels, an optional label and an id, one dictionary per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, ids: torch.Tensor) -> None:
        self.images, self.labels, self.ids = images, labels, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        record = {"pixels": self.images[index].flatten(), "id": self.ids[index]}
        if self.labels is not None:
            record["label"] = self.labels[index]
        return record


def record_loader(state: dict) -> None:
    """Load one batch of records into the state (the DataLoader has already stacked each field)."""
    batch = next(state[torchbearer.ITERATOR])
    batch = torchbearer.deep_to(batch, state[torchbearer.DEVICE], state[torchbearer.DATA_TYPE])
    state[torchbearer.X] = batch["pixels"].view(-1, 1, 8, 8)
    state[SAMPLE_ID] = batch["id"]
    if "label" in batch:  # unlabelled records (for predict) leave Y_TRUE unset: no loss, no metrics
        state[torchbearer.Y_TRUE] = batch["label"]


class Mistakes(Callback):
    """After each validation pass, the ids, labels and predictions of the misclassified samples."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, ...]] = []
        self.ids, self.labels, self.predictions = [], [], []

    # The validation hooks also run in evaluate() and predict(); only validation passes count here.
    @callbacks.only_if(lambda state: state[torchbearer.DATA] == torchbearer.VALIDATION_DATA)
    def on_start_validation(self, state: dict) -> None:
        self.batches = []

    @callbacks.only_if(lambda state: state[torchbearer.DATA] == torchbearer.VALIDATION_DATA)
    def on_step_validation(self, state: dict) -> None:
        # Keep tensors; deciding which are wrong waits for the end of the pass (one sync, not one per batch).
        predictions = state[torchbearer.Y_PRED].argmax(dim=1)
        self.batches.append((state[SAMPLE_ID], state[torchbearer.Y_TRUE], predictions))

    @callbacks.only_if(lambda state: state[torchbearer.DATA] == torchbearer.VALIDATION_DATA)
    def on_end_validation(self, state: dict) -> None:
        ids, labels, predictions = (torch.cat(parts) for parts in zip(*self.batches))
        wrong = labels != predictions
        self.ids, self.labels, self.predictions = (part[wrong].tolist() for part in (ids, labels, predictions))


def main() -> None:
    args = parse_args(__doc__, "custom_loader")
    images, labels = digits(limit=500 if args.fast else None)
    ids = torch.arange(len(labels))
    order = torch.randperm(len(labels))
    train, val, test = order.tensor_split([len(order) * 3 // 5, len(order) * 4 // 5])  # 60% / 20% / 20%
    loaders = {
        "train": DataLoader(DigitRecords(images[train], labels[train], ids[train]), batch_size=32, shuffle=True),
        "val": DataLoader(DigitRecords(images[val], labels[val], ids[val]), batch_size=128),
        "test": DataLoader(DigitRecords(images[test], None, ids[test]), batch_size=128),  # no labels
    }

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    mistakes = Mistakes()
    trial = Trial(
        model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        callbacks=[mistakes], verbose=0 if args.fast else 1,
    )  # fmt: skip
    trial.with_generators(loaders["train"], loaders["val"], loaders["test"]).with_loader(record_loader)
    history = trial.run(epochs=2 if args.fast else 30)

    predictions = trial.predict(verbose=0).argmax(dim=1)
    test_accuracy = (predictions == labels[test]).float().mean().item()
    print(f"val_acc={history[-1]['val_acc']:.4f} test_acc={test_accuracy:.4f} (predicted from unlabelled records)")
    print(f"misclassified validation ids: {mistakes.ids[:20]}{' ...' if len(mistakes.ids) > 20 else ''}")

    shown = list(zip(mistakes.ids, mistakes.labels, mistakes.predictions))[:12]
    figure, axes = new_figure(columns=6, rows=2, size=(1.7, 2.1))
    for axis in axes:
        axis.axis("off")
    for axis, (sample_id, label, prediction) in zip(axes, shown):
        axis.imshow(images[sample_id, 0].numpy(), cmap="gray", interpolation="nearest")
        axis.set_title(f"#{sample_id}: {label}->{prediction}", fontsize=9)
    figure.suptitle("misclassified validation digits (label->prediction)")
    save(figure, args.out / "mistakes.png")
    print(f"wrote {plot_history(history, str(args.out / 'history.png'), metrics=['loss', 'acc'])}")


if __name__ == "__main__":
    main()
