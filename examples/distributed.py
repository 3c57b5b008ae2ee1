"""Scaling out: the same Trial script on one process, several GPUs or several machines.

Nothing below mentions ranks except the final ``print``. Launch it as you like:

    python examples/distributed.py                              # one process
    torchrun --nproc_per_node=2 examples/distributed.py         # two processes on this machine
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 examples/distributed.py      # on each of two machines

Under torchrun the Trial starts the process group, wraps the model in DistributedDataParallel
(``--strategy fsdp`` shards it with FSDP2 instead), gives each loader a per-rank sampler, and
all-reduces the metrics, so every rank reports the metrics of the whole validation set. Only rank
zero prints progress and writes ``log.csv`` and ``model.pt`` under ``--out``. The batch size is per
process: on N processes each optimizer step sees N times ``--batch-size`` samples.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import CSVLogger, MostRecent


def digits(validation_share: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    """Scikit-learn's 8x8 handwritten digits, split the same way on every process."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    split = int(len(labels) * (1 - validation_share))
    train, validation = order[:split], order[split:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[validation], labels[validation])


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="two short epochs, for tests")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--out", default="runs/distributed")
    args = parser.parse_args()

    torch.manual_seed(0)  # every process builds the same initial model (DDP also copies rank zero's)
    torch.set_num_threads(1)  # a model this small gains nothing from more threads, which only contend
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, validation = digits()

    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    callbacks = [CSVLogger(str(out / "log.csv")), MostRecent(str(out / "model.pt"))]
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks, verbose=1)
    trial.with_distributed(strategy=args.strategy)  # optional: DDP is the default under torchrun
    trial.with_generators(
        DataLoader(train, batch_size=args.batch_size, shuffle=True),
        DataLoader(validation, batch_size=128),
    )
    if torch.cuda.is_available():
        trial.to("cuda")  # each process then uses cuda:LOCAL_RANK

    history = trial.run(epochs=2 if args.fast else args.epochs)
    final = history[-1]
    if torchbearer.distributed.is_rank_zero():
        world = torchbearer.distributed.get_world_size()
        print(f"{world} process(es): val_acc={final['val_acc']:.4f} val_loss={final['val_loss']:.4f} -> {out}")


if __name__ == "__main__":
    main()
