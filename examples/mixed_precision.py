"""Mixed precision, gradient accumulation, torch.compile and prefetching on the digits CNN.

Trains the same small CNN four ways and prints one row per variant: full precision; bf16 autocast;
fp16 with a gradient scaler (on a GPU, or on the CPU where PyTorch supports it); and bf16 with
gradient accumulation over 4 batches plus ``torch.compile`` and prefetching. Each is one builder
call on an otherwise unchanged Trial:

    trial.with_precision('bf16')          # autocast the forward pass and the loss
    trial.with_precision('fp16')          # ... and scale the loss (GradScaler), skipping overflowing steps
    trial.with_accumulation(4)            # one optimizer step per 4 batches
    trial.with_compile()                  # forward, loss and backward compiled as one region; plain checkpoint names
    trial.with_prefetch()                 # copy the next batch to the device while this one trains

Writes ``variants.png`` (validation accuracy per epoch of each variant) under
``runs/mixed_precision/``. Pass ``--device cuda`` on a GPU machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import digits, epoch_axis, new_figure, parse_args, save, small_cnn
from matplotlib.figure import Figure
from torch import nn

import torchbearer
from torchbearer import Trial


def train_variant(name: str, data, args) -> list:
    """Train one variant from the same initial weights; returns its history."""
    x_train, y_train, x_val, y_val = data
    torch.manual_seed(args.seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], verbose=0).to(args.device)
    if name == "bf16":
        trial.with_precision("bf16")
    elif name == "fp16":
        trial.with_precision("fp16")
    elif name == "bf16 + accumulate 4 + compile + prefetch":
        # --fast compiles with the 'eager' backend (graph capture only): inductor's first compile of a
        # CNN takes about a minute on a small CPU. Real runs use the default inductor backend.
        trial.with_precision("bf16").with_accumulation(4).with_prefetch()
        trial.with_compile(**({"backend": "eager"} if args.fast else {}))
    batch_size = 8 if "accumulate" in name else 32  # 4 x 8 = the same 32 samples per optimizer step
    trial.with_train_data(x_train, y_train, batch_size=batch_size, num_workers=0)
    trial.with_val_data(x_val, y_val, batch_size=256, num_workers=0)
    start = time.perf_counter()
    history = trial.run(args.epochs)
    seconds = time.perf_counter() - start
    print(f"{name:41s} val_acc={history[-1]['val_acc']:.4f} loss={history[-1]['loss']:.4f} time={seconds:.1f}s")
    return history


# The variants often reach the same accuracies, so their lines would lie on top of each other: each line
# is drawn narrower, with smaller hollow markers, than the ones before it, so every one stays visible.
LINE_STYLES = [("o", "-", 3.5, 11), ("s", "--", 2.5, 8), ("^", ":", 1.8, 6), ("x", "-.", 1.0, 5)]


def plot_variants(histories: dict) -> Figure:
    """Validation accuracy per epoch of each variant, one line each."""
    figure, (axes,) = new_figure()
    for (name, history), (marker, linestyle, width, size) in zip(histories.items(), LINE_STYLES):
        epochs, accuracies = range(len(history)), [record["val_acc"] for record in history]
        axes.plot(epochs, accuracies, marker=marker, linestyle=linestyle, linewidth=width, markersize=size,
                  markerfacecolor="none", label=name)  # fmt: skip
    epoch_axis(axes)
    axes.set_ylabel("validation accuracy")
    axes.legend()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=8)
    args = parse_args(__doc__, "mixed_precision", parser)
    if args.fast:
        args.epochs = 2
    images, labels = digits(400 if args.fast else None)
    data = torchbearer.cv_utils.train_valid_splitter(images, labels, 0.2)
    variants = ["fp32", "bf16", "fp16", "bf16 + accumulate 4 + compile + prefetch"]
    histories = {name: train_variant(name, data, args) for name in variants}
    save(plot_variants(histories), args.out / "variants.png")


if __name__ == "__main__":
    main()
