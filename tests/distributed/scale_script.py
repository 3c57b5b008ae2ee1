"""Shuffled parity and sharded checkpoints on another world size, in one launch per world size.

1. Parity: ``trial_script.py`` with shuffled training and validation loaders, 36 training samples and a
   global batch of 12 (12 / world size per rank), written to ``OUT/parity``.
2. Sharded checkpoints, FSDP2 with ``state_dict_type='sharded'`` and ``async_save=True``, the same data
   and model:

   * ``--write FOLDER`` (2 processes): two epochs with ``MostRecent(FOLDER)``, whose writes are slowed
     down by a second each, so that training visibly goes on while a checkpoint is written; the times of
     every step, save call and write go to ``OUT/timeline.json``. Then a new Trial loads the folder and
     trains the third epoch (``OUT/continued2.pt``).
   * ``--load FOLDER``: a new Trial loads the folder on this world size (sharded on 3 processes, a plain
     model on 1) and trains the third epoch (``OUT/continued<world>.pt``).
   * ``--crash-during-save``: then starts a background save into the folder whose writes take a minute,
     and every rank SIGKILLs itself while it is in flight.

``--device cuda`` runs both on one GPU per process (``benchmarks/cuda_checks.sh``, with two or more GPUs).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import time

import torch
import trial_script
from torch import nn
from torch.distributed.checkpoint import FileSystemWriter
from torch.utils.data import DataLoader

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import Callback, MostRecent
from torchbearer.distributed import get_rank, get_world_size, is_rank_zero, load_checkpoint, save_checkpoint

TRAIN_SIZE, GLOBAL_BATCH = 36, 12
WRITE_DELAY = [0.0]  # seconds each checkpoint write sleeps first
DEVICE = ["cpu"]
TIMELINE: list = []  # (what, seconds) on this rank


def _slow_write_data(original):
    def write_data(self, plan, planner):
        TIMELINE.append(("write_start", time.monotonic()))
        time.sleep(WRITE_DELAY[0])
        result = original(self, plan, planner)
        TIMELINE.append(("write_end", time.monotonic()))
        return result

    return write_data


FileSystemWriter.write_data = _slow_write_data(FileSystemWriter.write_data)


class TimedMostRecent(MostRecent):
    """MostRecent that notes when each save was called and returned, and each training step."""

    def on_checkpoint(self, state: dict) -> None:
        TIMELINE.append(("save_called", time.monotonic()))
        super().on_checkpoint(state)
        TIMELINE.append(("save_returned", time.monotonic()))

    def on_step_training(self, state: dict) -> None:
        TIMELINE.append(("step", time.monotonic()))


def sharded_trial(callbacks: list[Callback]) -> Trial:
    model, optimizer = trial_script.model_and_optimizer()
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks, verbose=0)
    trial.to(DEVICE[0])
    trial.with_distributed(strategy="fsdp", state_dict_type="sharded", async_save=True, timeout=120)
    train = trial_script.data("train", TRAIN_SIZE)
    validation = trial_script.data("validation", trial_script.VALIDATION_SIZE)
    return trial.with_generators(
        DataLoader(train, batch_size=GLOBAL_BATCH // _world(), shuffle=True),
        DataLoader(validation, batch_size=4, shuffle=True),
    )


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def continue_from(folder: str, out: str) -> Trial:
    """A new Trial loads ``folder`` and trains the third epoch; rank zero saves its weights and history."""
    trial = sharded_trial([])
    load_checkpoint(trial, folder)
    history = trial.run(3)
    shards = trial.state_dict()[torchbearer.MODEL]
    full = {key: getattr(value, "full_tensor", lambda v=value: v)() for key, value in shards.items()}  # gathers
    weights = {key: value.cpu() for key, value in full.items()}
    if is_rank_zero():
        torch.save({"model": weights, "history": history}, os.path.join(out, f"continued{get_world_size()}.pt"))
    return trial


def write(folder: str, out: str) -> None:
    WRITE_DELAY[0] = 1.0
    trial = sharded_trial([TimedMostRecent(folder)])
    trial.run(2)
    torchbearer.distributed.wait_for_checkpoint(trial.state)
    WRITE_DELAY[0] = 0.0
    if is_rank_zero():
        with open(os.path.join(out, "timeline.json"), "w") as file:
            json.dump(TIMELINE, file)
    continue_from(folder, out)


def crash_during_save(trial: Trial, folder: str, out: str) -> None:
    WRITE_DELAY[0] = 60.0
    save_checkpoint(trial.state_dict(), folder, trial.state)
    with open(os.path.join(out, f"crash_save_returned{get_rank()}"), "w"):
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--write", default="")
    parser.add_argument("--load", default="")
    parser.add_argument("--crash-during-save", action="store_true")
    parser.add_argument("--device", default="cpu", help="'cuda': one GPU per process (benchmarks/cuda_checks.sh)")
    args = parser.parse_args(argv)
    DEVICE[0] = args.device
    parity = os.path.join(args.out, "parity")
    os.makedirs(parity, exist_ok=True)
    batch = str(GLOBAL_BATCH // _world())
    trial_script.main(
        ["--out", parity, "--batch-size", batch, "--train-size", str(TRAIN_SIZE), "--shuffle", "--device", args.device]
    )
    if args.write:
        write(args.write, args.out)
    if args.load:
        trial = continue_from(args.load, args.out)
        if args.crash_during_save:
            crash_during_save(trial, args.load, args.out)


if __name__ == "__main__":
    faulthandler.enable()
    torch.set_num_threads(1)
    main(sys.argv[1:])
