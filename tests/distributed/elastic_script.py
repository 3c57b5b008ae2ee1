"""A Trial script that survives losing a worker: the recipe of ``docs/scaling-out.md``, as the tests run it.

It checkpoints every 4 training steps to ``OUT/checkpoint.pt`` (``Interval(..., on_batch=True)``), loads
that file if it exists before ``run``, and writes a checkpoint on SIGTERM (``with_preemption``). The
model has dropout and both loaders shuffle, so resuming exactly needs every random state restored.

Faults, each injected once per output folder (a marker file remembers it):

* ``--kill-at N``: rank 1 SIGKILLs itself after training step N (``torchrun --max-restarts`` restarts the group);
* ``--term-at N``: rank 0 sends SIGTERM to the ``torchrun`` agent after step N, as a cluster would; the
  agent passes it on to every worker.

Steps count from 1 over the whole run (6 per epoch), so a restarted group reaches step N once more at
the same point of training. Rank zero writes ``final.pt`` (weights, history, the restart count); a rank
that stops for SIGTERM writes ``preempted<rank>.json`` with where it stopped.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import Interval, on_step_training
from torchbearer.distributed import Preempted, get_rank, is_rank_zero, load_checkpoint

TRAIN_SIZE, VALIDATION_SIZE, BATCH_SIZE, EPOCHS, PERIOD = 48, 13, 4, 3, 4


def data() -> tuple[TensorDataset, TensorDataset]:
    x = torch.randn(TRAIN_SIZE + VALIDATION_SIZE, 6, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return TensorDataset(x[:TRAIN_SIZE], y[:TRAIN_SIZE]), TensorDataset(x[TRAIN_SIZE:], y[TRAIN_SIZE:])


def fault(out: str, kill_at: int, term_at: int):
    """A callback that injects the faults asked for, once per output folder."""

    @on_step_training
    def inject(state: dict) -> None:
        step = state[torchbearer.EPOCH] * state[torchbearer.TRAIN_STEPS] + state[torchbearer.BATCH] + 1
        if get_rank() == 1 and step == kill_at and _first_time(out, "killed"):
            os.kill(os.getpid(), signal.SIGKILL)
        if get_rank() == 0 and step == term_at and _first_time(out, "terminated"):
            os.kill(os.getppid(), signal.SIGTERM)  # the torchrun agent, which signals every worker

    return inject


def _first_time(out: str, what: str) -> bool:
    marker = os.path.join(out, what)
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--term-at", type=int, default=-1)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train, validation = data()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    callbacks = [Interval(checkpoint, period=PERIOD, on_batch=True), fault(args.out, args.kill_at, args.term_at)]
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks, verbose=0)
    trial.with_distributed(timeout=60).with_preemption(checkpoint)
    trial.with_generators(
        DataLoader(train, batch_size=BATCH_SIZE, shuffle=True), DataLoader(validation, batch_size=4, shuffle=True)
    )
    if os.path.exists(checkpoint):
        load_checkpoint(trial, checkpoint)
    try:
        history = trial.run(EPOCHS)
    except Preempted as preempted:  # record where this rank stopped, then exit with its status
        with open(os.path.join(args.out, f"preempted{get_rank()}.json"), "w") as file:
            json.dump({"progress": preempted.progress, "code": preempted.code, "restarts": _restarts()}, file)
        raise
    weights = trial.state_dict()[torchbearer.MODEL]
    if is_rank_zero():
        final = {"model": weights, "history": history, "restarts": _restarts()}
        torch.save(final, os.path.join(args.out, "final.pt"))


def _restarts() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


if __name__ == "__main__":
    faulthandler.enable()  # a worker that aborts inside PyTorch prints every thread's Python stack first
    torch.set_num_threads(1)
    main(sys.argv[1:])
