"""Plumbing shared by the example scripts: command line, offline data and figure saving.

Nothing here is torchbearer: it keeps each example focused on the library. Every example accepts
``--fast`` (a few-second smoke run, used by the tests) and ``--out`` (where its files go, default
``runs/<example name>``).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import matplotlib
import numpy as np
import torch
from torch import nn

matplotlib.use("Agg")  # draw to files only: the examples run on headless machines too

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

_SKLEARN_DATA = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "data"


def parse_args(description: str, name: str, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse ``--fast``, ``--out`` and ``--seed`` (plus any arguments already on ``parser``), then get ready.

    Seeds torch, uses one CPU thread (the models are tiny: more threads only contend) and creates
    the output folder. ``args.out`` is a :class:`~pathlib.Path`.
    """
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--fast", action="store_true", help="a tiny run that finishes in seconds (for tests)")
    parser.add_argument("--out", default=f"runs/{name}", help="folder for figures and files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def digits(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits: images ``[N, 1, 8, 8]`` in [0, 1] and labels ``[N]``.

    The same data as ``sklearn.datasets.load_digits()``, read straight from the CSV file that
    scikit-learn ships: importing ``sklearn.datasets`` also loads SciPy, which takes longer than
    the ``--fast`` runs themselves.

    Args:
        limit: Keep only the first ``limit`` samples (for ``--fast`` runs).
    """
    table = np.loadtxt(_SKLEARN_DATA / "digits.csv.gz", delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:limit, :-1]).view(-1, 1, 8, 8) / 16.0
    labels = torch.from_numpy(table[:limit, -1]).long()
    return images, labels


def new_figure(columns: int = 1, rows: int = 1, size: tuple[float, float] = (5, 4)) -> tuple[Figure, list]:
    """A figure (not tied to pyplot's global state) and its axes, as a flat list."""
    figure = Figure(figsize=(size[0] * columns, size[1] * rows))
    axes = [figure.add_subplot(rows, columns, index + 1) for index in range(rows * columns)]
    return figure, axes


def epoch_axis(axes) -> None:
    """Label the x axis ``epoch`` with whole-number ticks; epochs count from 0, as in the history and logs."""
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG and say where."""
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    print(f"wrote {path}")


def show_images(axes, images: torch.Tensor, title: str = "", columns: int = 8) -> None:
    """Draw a batch ``[B, 1, H, W]`` of images in [0, 1] as one grid on ``axes``."""
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().clamp(0, 1), nrow=columns, padding=1, pad_value=1.0)
    axes.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_title(title)
    axes.axis("off")


def small_cnn() -> nn.Module:
    """The small CNN the digits examples train: two conv blocks and a two-layer head, 10 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
