"""Logging a run to TensorBoard: metrics, the model graph, text and images.

Three callbacks, each writing under ``<log_dir>/<model class>_<comment>/``:

* ``TensorBoard`` writes the model graph once, the metrics of every epoch (``epoch/<name>``), and
  with ``write_batch_metrics=True`` the running metrics every few batches (``batch/<name>``, one
  folder per epoch);
* ``TensorBoardText`` writes a summary of the trial and a table of each epoch's metrics;
* ``TensorBoardImages`` writes a grid of the images found in the state under a key (here the
  validation inputs, ``torchbearer.X``).

After training the example reads the epoch scalars back from the event files with
TensorBoard's own reader, to show what was written. To browse the logs yourself, run
``tensorboard --logdir runs/tensorboard_logging``.

Writes the event files and ``scalars.png`` under ``runs/tensorboard_logging/``.
"""

from __future__ import annotations

import torch
from common import digits, epoch_axis, new_figure, parse_args, save
from matplotlib.figure import Figure
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import TensorBoard, TensorBoardImages, TensorBoardText
from torchbearer.cv_utils import train_valid_splitter


class SmallCNN(nn.Module):
    """The class name becomes part of the log folder's name: SmallCNN_<comment>."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def read_epoch_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every ``epoch/...`` scalar in a run folder's event files, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag.startswith("epoch/")
    }


def plot_scalars(scalars: dict) -> Figure:
    """The epoch scalars of loss and accuracy (training and validation) as read from the event files."""
    figure, axes = new_figure(columns=2, size=(5, 4))
    for name, axis in zip(("loss", "acc"), axes):
        for tag in (f"epoch/{name}", f"epoch/val_{name}"):
            steps, values = zip(*scalars[tag])
            axis.plot(steps, values, "o-", label=tag)
        epoch_axis(axis)
        axis.legend()
    figure.suptitle("read back from the TensorBoard event files")
    return figure


def main() -> None:
    args = parse_args(__doc__, "tensorboard_logging")
    x_train, y_train, x_val, y_val = train_valid_splitter(*digits(limit=500 if args.fast else None), 0.2)
    log_dir = str(args.out)
    loggers = [
        TensorBoard(log_dir, write_graph=True, write_batch_metrics=True, batch_step_size=5, comment="demo"),
        TensorBoardText(log_dir, comment="demo"),
        TensorBoardImages(log_dir, comment="demo", name="validation inputs", key=torchbearer.X, num_images=32),
    ]
    model = SmallCNN()
    trial = Trial(
        model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        callbacks=loggers, verbose=0 if args.fast else 1,
    )  # fmt: skip
    trial.with_train_data(x_train, y_train, batch_size=32, num_workers=0)
    trial.with_val_data(x_val, y_val, batch_size=64, num_workers=0)
    trial.run(epochs=2 if args.fast else 15)

    run_dir = args.out / "SmallCNN_demo"
    event_files = sorted(path.relative_to(args.out) for path in args.out.rglob("events.out.tfevents.*"))
    print(f"{len(event_files)} event files under {args.out}, e.g. {event_files[0]}")
    scalars = read_epoch_scalars(run_dir)
    print(f"epoch scalars logged: {sorted(scalars)}")
    print(f"see them with: tensorboard --logdir {args.out}")

    save(plot_scalars(scalars), args.out / "scalars.png")


if __name__ == "__main__":
    main()
