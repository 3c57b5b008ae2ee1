"""Throughput under scale: samples per second on 1, 2, 4 ... processes, Trial against a hand-written DDP loop.

For each process count the script launches ``torchrun --standalone --nproc-per-node=N`` on itself. Every
worker builds both contestants from the same seed, with the ``mlp`` workload of ``overhead.py`` (20,000
training and 5,000 validation samples, batch 64 per process):

- **raw DDP**: the loop one writes by hand: ``DistributedDataParallel``, a ``DistributedSampler`` per
  loader (``set_epoch`` each epoch), loss and accuracy summed on the device and all-reduced once per pass;
- **Trial**: ``Trial(model, optimizer, criterion, metrics=['acc', 'loss'])`` on the plain loaders, which it
  distributes itself (its stop agreement adds a one-number all-reduce per batch).

Epochs alternate (raw, Trial, Trial, raw, ...); each is timed on the wall clock between two barriers, so it
lasts as long as its slowest rank. A sample counts once per epoch, in training or validation: samples/s
is 25,000 over the median epoch time. Each worker uses one thread.

Usage: ``python benchmarks/scaling.py [--processes 1 2 4] [--pairs 5] [--device cuda]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import mlp_workload  # noqa: E402  (a script beside this one, not a package)

from torchbearer import Trial  # noqa: E402


class Contestant:
    """A model, optimizer and data built from the same seed for either loop; ``--samples`` cuts the data."""

    def __init__(self, device: torch.device, samples: int | None) -> None:
        torch.manual_seed(0)
        model, (x_train, y_train), (x_val, y_val), self.batch_size = mlp_workload()
        if samples is not None:
            x_train, y_train, x_val, y_val = x_train[:samples], y_train[:samples], x_val[:samples], y_val[:samples]
        self.device = device
        self.model = model.to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.criterion = nn.CrossEntropyLoss()
        self.train, self.validation = TensorDataset(x_train, y_train), TensorDataset(x_val, y_val)

    @property
    def samples(self) -> int:
        return len(self.train) + len(self.validation)


class RawDDP(Contestant):
    """The DDP loop one writes by hand, computing what Trial reports (epoch loss and accuracy)."""

    def __init__(self, device: torch.device, samples: int | None) -> None:
        super().__init__(device, samples)
        device_ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)
        self.train_sampler = DistributedSampler(self.train, shuffle=True)
        self.train_loader = DataLoader(self.train, batch_size=self.batch_size, sampler=self.train_sampler)
        validation_sampler = DistributedSampler(self.validation, shuffle=False)
        self.validation_loader = DataLoader(self.validation, batch_size=self.batch_size, sampler=validation_sampler)
        self.epochs = 0

    def epoch(self) -> dict:
        self.train_sampler.set_epoch(self.epochs)
        self.epochs += 1
        self.ddp.train()
        totals = torch.zeros(3, device=self.device)  # loss sum, correct, samples
        for x, y in self.train_loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad()
            output = self.ddp(x)
            loss = self.criterion(output, y)
            loss.backward()
            self.optimizer.step()
            totals += torch.stack((loss.detach() * y.numel(), (output.argmax(1) == y).sum(), totals.new_tensor(len(y))))
        history = self._reduced("", totals)
        self.ddp.eval()
        totals.zero_()
        with torch.no_grad():
            for x, y in self.validation_loader:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                output = self.model(x)  # the bare module: no DDP work without gradients
                loss = self.criterion(output, y)
                totals += torch.stack((loss * y.numel(), (output.argmax(1) == y).sum(), totals.new_tensor(len(y))))
        return {**history, **self._reduced("val_", totals)}

    @staticmethod
    def _reduced(prefix: str, totals: torch.Tensor) -> dict:
        dist.all_reduce(totals)  # one collective per pass; .tolist() is the pass's one host-device sync
        loss, correct, seen = totals.tolist()
        return {prefix + "loss": loss / seen, prefix + "acc": correct / seen}


class TrialLoop(Contestant):
    """The same training through Trial, given the plain loaders; one epoch per call."""

    def __init__(self, device: torch.device, samples: int | None) -> None:
        super().__init__(device, samples)
        self.trial = Trial(self.model, self.optimizer, self.criterion, metrics=["acc", "loss"], verbose=0)
        self.trial.with_generators(
            DataLoader(self.train, batch_size=self.batch_size, shuffle=True),
            DataLoader(self.validation, batch_size=self.batch_size),
        )
        self.trial.to(device)
        self.epochs = 0

    def epoch(self) -> dict:
        self.epochs += 1
        return self.trial.run(self.epochs)[-1]


def timed_epoch(contestant: RawDDP | TrialLoop) -> float:
    """Wall seconds of one epoch of every rank: from a barrier until the slowest rank is done."""
    dist.barrier()
    if contestant.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    contestant.epoch()
    if contestant.device.type == "cuda":
        torch.cuda.synchronize()
    dist.barrier()
    return time.perf_counter() - start


def worker(args: argparse.Namespace) -> None:
    """One rank under torchrun: time both loops in alternation; rank zero writes the times to ``--result``."""
    torch.set_num_threads(1)
    if args.device == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
        torch.cuda.set_device(device)
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    raw, trial = RawDDP(device, args.samples), TrialLoop(device, args.samples)
    raw.epoch(), trial.epoch()  # warm-up
    raw_times, trial_times = [], []
    for pair in range(args.pairs):
        first, second = (raw, trial) if pair % 2 == 0 else (trial, raw)
        for contestant in (first, second):
            (raw_times if contestant is raw else trial_times).append(timed_epoch(contestant))
    if dist.get_rank() == 0:
        with open(args.result, "w") as file:
            json.dump({"raw": raw_times, "trial": trial_times, "samples": raw.samples}, file)
    time.sleep(0.1)  # let gloo's threads release their last work before exit (see torchbearer's process_group.py)
    dist.destroy_process_group()


def launch(processes: int, args: argparse.Namespace) -> dict:
    """Run the workers of one process count under torchrun and return rank zero's times."""
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            __file__, "--worker", "--result", result, "--pairs", str(args.pairs), "--device", args.device,
        ]  # fmt: skip
        if args.samples is not None:
            command += ["--samples", str(args.samples)]
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
        with open(result) as file:
            return json.load(file)


def table(results: dict[int, dict], device: str) -> str:
    """The markdown table: samples/s of each loop per process count, and the Trial/raw ratio."""
    lines = [
        f"device={device} backend={'nccl' if device == 'cuda' else 'gloo'} cpus={os.cpu_count()} "
        f"torch={torch.__version__}",
        "| processes | raw DDP samples/s | Trial samples/s | Trial/raw |",
        "|-----------|-------------------|-----------------|-----------|",
    ]
    for processes, result in results.items():
        raw = result["samples"] / statistics.median(result["raw"])
        trial = result["samples"] / statistics.median(result["trial"])
        lines.append(f"| {processes:9d} | {raw:17.0f} | {trial:15.0f} | {trial / raw:9.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--pairs", type=int, default=5, help="timed (raw, Trial) epoch pairs per process count")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--samples", type=int, help="use only this many training (and validation) samples")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results = {processes: launch(processes, args) for processes in args.processes}
    print(table(results, args.device))


if __name__ == "__main__":
    main()
