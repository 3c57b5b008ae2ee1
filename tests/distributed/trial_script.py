"""An ordinary single-process Trial script, which the distributed tests run under ``torchrun``.

Nothing in the training code knows about ranks: the tests launch it on 1 process (in the test
process itself, as the reference) and on 2 processes, and compare what each run writes to ``--out``:

* ``rank<r>.json``: the history, ``evaluate()`` values, predictions and facts about the run;
* ``weights.pt``: the final model weights (``trial.state_dict()``, rank zero);
* ``log.csv`` and ``model.pt``: from ``CSVLogger`` and ``MostRecent``.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import ConsolePrinter, CSVLogger, MostRecent
from torchbearer.metrics import lambda_metric, mean, std, to_dict
from torchbearer.state import TEST_GENERATOR

TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE = 32, 13, 11
FEATURES, CLASSES = 6, 3


def data(split: str, size: int) -> TensorDataset:
    """A learnable toy problem (the class is the largest of the first three features), the same on every rank."""
    generator = torch.Generator().manual_seed({"train": 1, "validation": 2, "test": 3}[split])
    x = torch.randn(size, FEATURES, generator=generator)
    return TensorDataset(x, x[:, :CLASSES].argmax(1))


def metrics() -> list:
    """Accuracy and loss, a per-sample value with its mean and std, and an accuracy over the whole pass.

    Per-sample values pooled over ranks must equal one process's; the whole-pass function (an
    EpochLambda) sees the predictions of every rank.
    """

    @std
    @mean
    @lambda_metric("top_logit")
    def top_logit(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return y_pred.max(1).values

    @to_dict
    @lambda_metric("pass_acc", on_epoch=True)
    def pass_accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return (y_pred.argmax(1) == y_true).float().mean()

    return ["acc", "loss", top_logit, pass_accuracy]


def model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, CLASSES))
    return model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)


class FailAt(torchbearer.Callback):
    """Raise on one rank at the start of an epoch (the failure test)."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank, self.epoch = rank, epoch

    def on_start_epoch(self, state: dict) -> None:
        if torchbearer.distributed.get_rank() == self.rank and state[torchbearer.EPOCH] == self.epoch:
            raise RuntimeError(f"deliberate failure on rank {self.rank}")


class StopAt(torchbearer.Callback):
    """Set ``STOP_TRAINING`` on one rank only, at a given training batch; record each rank's last batch."""

    def __init__(self, rank: int, epoch: int, batch: int) -> None:
        self.rank, self.epoch, self.batch = rank, epoch, batch
        self.last_trained: list[int] = []

    def on_step_training(self, state: dict) -> None:
        self.last_trained = [state[torchbearer.EPOCH], state[torchbearer.BATCH]]
        if torchbearer.distributed.get_rank() == self.rank and self.last_trained == [self.epoch, self.batch]:
            state[torchbearer.STOP_TRAINING] = True


class CountAllReduces(torchbearer.Callback):
    """Count DDP's gradient all-reduces with a communication hook (accumulation must skip all but the last)."""

    def __init__(self) -> None:
        self.calls = 0

    def on_start(self, state: dict) -> None:
        model = state[torchbearer.MODEL]
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model.register_comm_hook(None, self._hook)

    def _hook(self, process_group, bucket):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        self.calls += 1
        return allreduce_hook(process_group, bucket)


def main_trial(args: argparse.Namespace) -> dict:
    """Train, validate, evaluate and predict; write the CSV log, a checkpoint and the final weights."""
    model, optimizer = model_and_optimizer()
    callbacks = [CSVLogger(os.path.join(args.out, "log.csv")), MostRecent(os.path.join(args.out, "model.pt"))]
    if args.console:
        callbacks.append(ConsolePrinter())
    if args.fail_rank >= 0:
        callbacks.append(FailAt(args.fail_rank, epoch=1))
    stop = StopAt(args.stop_rank, epoch=1, batch=1)
    if args.stop_rank >= 0:
        callbacks.append(stop)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=metrics(), callbacks=callbacks, verbose=0)
    trial.to(args.device).with_distributed(strategy=args.strategy, timeout=120, backend=args.backend)
    trial.with_generators(
        DataLoader(data("train", args.train_size), batch_size=args.batch_size, shuffle=args.shuffle),
        DataLoader(data("validation", VALIDATION_SIZE), batch_size=4, shuffle=args.shuffle),
        DataLoader(TensorDataset(data("test", TEST_SIZE).tensors[0]), batch_size=3),
    )
    history = trial.run(args.epochs)
    csv_rows = _lines(os.path.join(args.out, "log.csv"))  # read before evaluate() adds its row
    evaluated = trial.evaluate()
    predictions = trial.predict()
    state_dict = trial.state_dict()
    if torchbearer.distributed.is_rank_zero():
        torch.save(state_dict[torchbearer.MODEL], os.path.join(args.out, "weights.pt"))
    reloaded = Trial(*model_and_optimizer(), nn.CrossEntropyLoss(), metrics=metrics(), verbose=0).to(args.device)
    torchbearer.distributed.load_checkpoint(reloaded, os.path.join(args.out, "model.pt"))
    reloaded_predictions = reloaded.with_test_generator(trial.state[TEST_GENERATOR]).predict().tolist()
    reloaded_optimizer = reloaded.state_dict()[torchbearer.OPTIMIZER]  # sharded after loading, under FSDP
    if args.sharded_copy:
        torchbearer.distributed.settings_of(trial.state).state_dict_type = "sharded"
        torchbearer.distributed.save_checkpoint(trial.state_dict(), args.sharded_copy, trial.state)
    rank_zero = torchbearer.distributed.is_rank_zero()
    return {
        "history": history,
        "csv_rows": csv_rows,
        "evaluate": evaluated,
        "predictions": predictions.tolist(),
        "model_type": type(trial.state[torchbearer.MODEL]).__name__,
        "train_steps": trial.state[torchbearer.TRAIN_STEPS],
        "validation_steps": trial.state[torchbearer.VALIDATION_STEPS],
        "reloaded_predictions": reloaded_predictions,
        # rank zero's (under FSDP only rank zero gathers the full optimizer state)
        "reloaded_optimizer_equal": _same(reloaded_optimizer, state_dict[torchbearer.OPTIMIZER]) or not rank_zero,
        "rng_ranks": len(state_dict.get(torchbearer.distributed.PER_RANK_KEY, [])),
        "last_trained": stop.last_trained,
    }


def _same(first, second) -> bool:
    """Equal nested state dicts (tensors compared by value)."""
    if isinstance(first, torch.Tensor):
        return isinstance(second, torch.Tensor) and torch.equal(first, second)
    if isinstance(first, dict):
        return (
            isinstance(second, dict)
            and first.keys() == second.keys()
            and all(_same(first[k], second[k]) for k in first)
        )
    if isinstance(first, (list, tuple)):
        return len(first) == len(second) and all(_same(a, b) for a, b in zip(first, second))
    return first == second


def _lines(path: str) -> list[str]:
    if not torchbearer.distributed.is_rank_zero():
        return []
    with open(path) as file:
        return file.read().splitlines()


def accumulation_trial(args: argparse.Namespace) -> dict:
    """Two micro-batches per step: weights, and how many gradient all-reduces DDP ran."""
    model, optimizer = model_and_optimizer()
    counter = CountAllReduces()
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), callbacks=[counter], verbose=0).with_accumulation(2)
    trial.with_train_generator(DataLoader(data("train", TRAIN_SIZE), batch_size=args.batch_size // 2))
    trial.run(1)
    weights = [parameter.detach().flatten().tolist() for parameter in model.parameters()]
    return {"weights": weights, "all_reduces": counter.calls, "steps": trial.state[torchbearer.TRAIN_STEPS]}


def opt_out_trials(args: argparse.Namespace) -> dict:
    """A model the user wrapped in DDP stays as it is; ``with_distributed(False)`` leaves everything alone."""
    model, optimizer = model_and_optimizer()
    wrapped = nn.parallel.DistributedDataParallel(model) if torchbearer.distributed.is_initialized() else model
    user_trial = Trial(wrapped, optimizer, nn.CrossEntropyLoss(), verbose=0)
    user_trial.with_train_generator(DataLoader(data("train", TRAIN_SIZE), batch_size=args.batch_size)).run(1)
    model, optimizer = model_and_optimizer()
    loader = DataLoader(data("validation", VALIDATION_SIZE), batch_size=4)
    off = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["acc"], verbose=0).with_distributed(False)
    off.with_val_generator(loader)
    return {
        "user_model_kept": user_trial.state[torchbearer.MODEL] is wrapped,
        "off_val_acc": off.evaluate()["val_acc"],
        "off_model_type": type(off.state[torchbearer.MODEL]).__name__,
        "off_loader_kept": off.state[torchbearer.VALIDATION_GENERATOR] is loader,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--shuffle", action="store_true", help="shuffle the training and validation loaders")
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--sharded-copy", default="")
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--stop-rank", type=int, default=-1, help="this rank alone stops at epoch 1, batch 1")
    parser.add_argument("--console", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default=None, help="process group backend (default: the Trial's choice)")
    parser.add_argument("--extras", action="store_true", help="also the accumulation and opt-out trials")
    args = parser.parse_args(argv)
    results = {"main": main_trial(args)}
    results["world_size"] = torchbearer.distributed.get_world_size()  # the Trial started the group
    if args.extras:
        results.update(accumulation=accumulation_trial(args), opt_out=opt_out_trials(args))
    with open(os.path.join(args.out, f"rank{torchbearer.distributed.get_rank()}.json"), "w") as file:
        json.dump(results, file)


if __name__ == "__main__":
    faulthandler.enable()  # a worker that aborts inside PyTorch prints every thread's Python stack first
    torch.set_num_threads(1)
    main(sys.argv[1:])
