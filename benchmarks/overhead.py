"""Overhead of Trial over a hand-written PyTorch loop, measured in one process.

The same model, data and seed are trained by (a) a raw loop that computes the same metrics in the
cheapest honest way (loss and accuracy accumulated on the device, one ``.item()`` per pass) and
(b) ``Trial`` with ``metrics=['acc', 'loss']``. The two alternate so that machine drift hits both
alike. On the CPU they alternate every batch (``--interleave batch``): Trial drives, and after
each of its batches the raw loop runs one batch of its own, timed apart. On a busy virtual
machine the speed changes within a fraction of a second, too fast for epoch pairs to cancel it.
With ``--interleave epoch`` (the default on a GPU) whole epochs alternate A B B A A B ...

The table reports the median seconds per epoch, the median, min and max of the per-epoch ratios
Trial/raw with a bootstrap interval for that median, the ratio of each side's fastest tenth of
epochs, and each side's peak memory (measured in a child process each). ``--control`` puts a
second raw loop in Trial's place, which shows how far apart two identical loops measure on the
machine. ``--instructions`` counts instead the CPU instructions of one epoch of each loop under
valgrind's callgrind: slow, but exact and repeatable.

``--compile`` times three loops in one run instead: the eager raw loop, the raw loop compiled by hand
(forward, loss and backward as one compiled function) and ``Trial.with_compile()``.

Usage: ``python benchmarks/overhead.py [--workload mlp|cnn] [--pairs 15] [--progress] [--device cuda] [--control]
[--interleave batch|epoch] [--instructions] [--compile [MODE]]``
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchbearer import Trial


def mlp_workload():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(25_000, 32, generator=generator)
    y = torch.randint(0, 10, (25_000,), generator=generator)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, (x[:20_000], y[:20_000]), (x[20_000:], y[20_000:]), 64


def cnn_workload():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order], labels[order]
    split = int(len(labels) * 0.8)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    return model, (images[:split], labels[:split]), (images[split:], labels[split:]), 32


WORKLOADS = {"mlp": mlp_workload, "cnn": cnn_workload}


class Side:
    """One contestant: a model, optimizer and loaders of its own, built from the same seed."""

    def __init__(self, workload: str, device: str, progress: bool) -> None:
        torch.manual_seed(0)
        model, (x_train, y_train), (x_val, y_val), batch_size = WORKLOADS[workload]()
        self.device = device
        self.progress = progress
        self.model = model.to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.criterion = nn.CrossEntropyLoss()
        self.train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True)
        self.val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=batch_size)


class RawLoop(Side):
    """A hand-written loop that produces the same history values as Trial with ['acc', 'loss']:
    epoch means of loss and accuracy, and running means over the last 50 batches refreshed every
    10 batches (``running_loss``, ``running_acc``), all accumulated on the device."""

    def __init__(self, workload: str, device: str, progress: bool) -> None:
        super().__init__(workload, device, progress)
        self.window: collections.deque = collections.deque(maxlen=50)  # (batch loss, batch accuracy)
        self.evaluate = self.model  # the validation forward pass

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """zero_grad → forward → loss → backward → optimizer step; returns the output and the loss."""
        self.optimizer.zero_grad()
        output = self.model(x)
        loss = self.criterion(output, y)
        loss.backward()
        self.optimizer.step()
        return output, loss

    def epoch(self) -> dict:
        _drain(self.steps())  # no Python code of ours between batches
        return self.history

    def drive(self, after_batch: Callable[[], None]) -> None:
        """One epoch that calls ``after_batch()`` after every batch but the last of each pass, as Trial's does."""
        steps, passes = self.steps(), (len(self.train_loader), len(self.val_loader))
        for batches in passes:
            next(steps)
            for _ in range(batches - 1):
                after_batch()
                next(steps)
        _drain(steps)

    def steps(self) -> Iterator[None]:
        """One epoch, pausing after every batch (see :class:`DrivenRawLoop`); sets ``self.history`` at the end."""
        bar = _progress_bar(self.progress, len(self.train_loader))
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        running = None
        for batch, (x, y) in enumerate(self.train_loader):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            output, loss = self.train_step(x, y)
            batch_correct = (output.argmax(1) == y).sum()
            loss_sum += loss.detach() * y.numel()  # every sample counts once in the epoch mean
            correct += batch_correct
            seen += y.numel()
            self.window.append(torch.stack((loss.detach(), batch_correct / y.numel())))
            if batch % 10 == 0:
                running = torch.stack(tuple(self.window)).mean(0)
            if bar is not None:
                bar.update(1)
                if time.monotonic() - getattr(bar, "_shown", 0) > 0.5:  # same refresh rate as Trial's bar
                    bar.set_postfix(running_loss=running[0].item(), running_acc=running[1].item())
                    bar._shown = time.monotonic()
            yield
        train = {"loss": loss_sum.item() / seen, "acc": correct.item() / seen}
        train["running_loss"], train["running_acc"] = running.tolist()
        if bar is not None:
            bar.set_postfix(train)
            bar.close()
        self.model.eval()
        loss_sum.zero_()
        correct.zero_()
        seen = 0
        with torch.no_grad():
            for x, y in self.val_loader:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                output = self.evaluate(x)
                loss_sum += self.criterion(output, y) * y.numel()
                correct += (output.argmax(1) == y).sum()
                seen += y.numel()
                yield
        self.history = {**train, "val_loss": loss_sum.item() / seen, "val_acc": correct.item() / seen}


class CompiledRawLoop(RawLoop):
    """The raw loop compiled by hand the way ``Trial.with_compile()`` compiles: zero_grad, then one compiled
    function for forward → loss → backward (dynamo traces the backward into the graph), then the optimizer
    step; validation runs the compiled model."""

    def __init__(self, workload: str, device: str, progress: bool, **compile_kwargs) -> None:
        super().__init__(workload, device, progress)
        torch._dynamo.config.trace_autograd_ops = True  # set once for the process, as a script would
        self.forward_backward = torch.compile(self._forward_backward, **compile_kwargs)
        self.evaluate = torch.compile(self.model, **compile_kwargs)
        self.cuda_graphs = compile_kwargs.get("mode") == "reduce-overhead"

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(x)
        loss = self.criterion(output, y)
        loss.backward()
        return output.detach(), loss.detach()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad()
        output, loss = self.forward_backward(x, y)
        if self.cuda_graphs:  # the running window keeps losses that the next replay would overwrite
            output, loss = output.clone(), loss.clone()
        self.optimizer.step()
        return output, loss


class TrialLoop(Side):
    """The same training through Trial, one epoch per call (``compile_kwargs``: with ``with_compile``)."""

    def __init__(
        self, workload: str, device: str, progress: bool, drives: bool = False, compile_kwargs: dict | None = None
    ) -> None:
        super().__init__(workload, device, progress)
        self.trial = Trial(self.model, self.optimizer, self.criterion, metrics=["acc", "loss"], verbose=0)
        if compile_kwargs is not None:
            self.trial.with_compile(**compile_kwargs)
        self.after_batch: Callable[[], None] = lambda: None
        if drives:  # hand over from inside the loaders, so that each loop's batch (fetch, step, metrics) runs whole
            self.trial.with_generators(_HandingOver(self.train_loader, self), _HandingOver(self.val_loader, self))
        else:
            self.trial.with_generators(self.train_loader, self.val_loader)
        self.trial.to(device)
        self.epochs = 0

    def epoch(self) -> dict:
        self.epochs += 1
        return self.trial.run(self.epochs, verbose=2 if self.progress else 0)[-1]

    def drive(self, after_batch: Callable[[], None]) -> None:
        """One epoch that calls ``after_batch()`` after every batch but the last of each pass, when the
        next batch is loaded (built with ``drives=True``)."""
        self.after_batch = after_batch
        self.epoch()


class _HandingOver:
    """A loader whose iterator calls its loop's ``after_batch()`` before it fetches each batch but the first.

    Before the fetch, so that each loop's batch (fetch, step, metrics) runs whole, as the raw loop's
    does when it drives. Where the hand-over falls matters: between Trial's fetch and its step, Trial
    measured 2-3% slower on ``cnn``.
    """

    def __init__(self, loader: DataLoader, loop: TrialLoop) -> None:
        self.loader, self.loop = loader, loop

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        for index in range(len(self.loader)):
            if index:
                self.loop.after_batch()
            yield next(batches)


_set_grad_enabled = torch._C._set_grad_enabled  # torch.set_grad_enabled without building a context manager
_drain = functools.partial(collections.deque, maxlen=0)  # runs an iterator to its end, in C


class DrivenRawLoop:
    """A raw loop run one batch at a time, right after each batch of another loop (``--interleave batch``).

    The two loops then alternate every millisecond or so, and whatever slows the machine slows both
    alike; epoch pairs are too long for that on a busy virtual machine. The driven loop times its own
    batches. It keeps its grad mode apart from the driver's: its validation batches run inside its
    own ``torch.no_grad()``, which would otherwise leak into the driver between batches.
    """

    def __init__(self, loop: RawLoop) -> None:
        self.loop = loop
        self.seconds = 0.0
        self._steps: Iterator[None] = iter(())
        self._grad_enabled = True

    def start(self) -> None:
        self.seconds, self._steps, self._grad_enabled = 0.0, self.loop.steps(), True

    def step(self) -> None:
        """Run the driven loop's next batch."""
        self._timed(next, self._steps)

    def finish(self) -> None:
        """Run what is left of the epoch (its end-of-pass totals)."""
        self._timed(_drain, self._steps)

    def _timed(self, run: Callable[[Iterator[None]], object], steps: Iterator[None]) -> None:
        """``run(steps)``, timed, in the driven loop's grad mode; the driver's is restored after."""
        driver_grad_enabled = torch.is_grad_enabled()
        _set_grad_enabled(self._grad_enabled)
        start = time.perf_counter()
        run(steps)
        self.seconds += time.perf_counter() - start
        self._grad_enabled = torch.is_grad_enabled()
        _set_grad_enabled(driver_grad_enabled)


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    import tqdm

    return tqdm.tqdm(total=total, desc="raw")


def _timed_epoch(side: Side) -> float:
    """Seconds for one epoch: process CPU time on the CPU (what the loop itself costs, less sensitive to
    other processes and to a virtual machine being descheduled); wall time on a GPU."""
    if side.device.startswith("cuda"):
        torch.cuda.synchronize()
        start = time.perf_counter()
        side.epoch()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    side.epoch()
    return time.process_time() - start


def timed_lockstep_epoch(driver: RawLoop | TrialLoop, *driven: DrivenRawLoop) -> tuple[float, ...]:
    """Seconds of one epoch of each loop run batch by batch in turn: (each driven raw loop ..., driver).

    Wall time, taken around each driven batch and around the whole driver epoch; the driver's time is
    the whole less the driven batches inside it, so the hand-over (a function call, a switch of
    grad mode and two clock reads per batch) counts against the driver. ``--control`` shows what
    that costs.
    """
    for loop in driven:
        loop.start()

    def after_batch() -> None:
        for loop in driven:
            loop.step()

    start = time.perf_counter()
    driver.drive(driven[0].step if len(driven) == 1 else after_batch)
    driver_seconds = time.perf_counter() - start - sum(loop.seconds for loop in driven)
    for loop in driven:
        loop.finish()
    return (*(loop.seconds for loop in driven), driver_seconds)


def peak_memory(kind: str, args: argparse.Namespace) -> float:
    """Peak resident memory (MiB) of a fresh process that trains two epochs with one side only."""
    command = [sys.executable, __file__, "--workload", args.workload, "--device", args.device, "--peak-of", kind]
    if args.progress:
        command.append("--progress")
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["peak_mib"]


def _peak_of(kind: str, args: argparse.Namespace) -> None:
    side = (RawLoop if kind == "raw" else TrialLoop)(args.workload, args.device, args.progress)
    side.epoch()
    side.epoch()
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak}))


def operation_counts(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Per training/validation batch: tensor operations dispatched and Python function calls, for each loop.

    Both are exact counts, free of timing noise: equal operation counts show that Trial adds no device
    work, and the extra Python calls are its whole remaining overhead.
    """
    import cProfile
    import pstats

    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOperations(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    counts = {}
    for name, side in (
        ("raw", RawLoop(args.workload, args.device, False)),
        ("Trial", TrialLoop(args.workload, args.device, False)),
    ):
        side.epoch()
        batches = len(side.train_loader) + len(side.val_loader)
        with CountOperations() as operations:
            side.epoch()
        profiler = cProfile.Profile()
        profiler.enable()
        side.epoch()
        profiler.disable()
        counts[name] = (operations.count / batches, pstats.Stats(profiler).total_calls / batches)
    return counts


def instruction_counts(workload: str) -> dict[str, int]:
    """CPU instructions of one epoch of each loop, each in its own process under valgrind's callgrind.

    Deterministic to about 0.1% between runs, so it shows differences that timings on a busy machine
    bury in noise. Each side takes minutes: valgrind runs the whole process about 50 times slower.

    Raises:
        SystemExit: valgrind or callgrind_control is not installed.
    """
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind and callgrind_control on the PATH (apt-get install valgrind)")
    counts = {}
    for kind in ("raw", "trial"):
        with tempfile.TemporaryDirectory() as folder:
            command = [
                "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={folder}/callgrind.out",
                sys.executable, __file__, "--workload", workload, "--instructions-of", kind,
            ]  # fmt: skip
            log = subprocess.run(command, check=True, capture_output=True, text=True).stderr
        counts[kind] = collected_instructions(log)
    return counts


def collected_instructions(valgrind_log: str) -> int:
    """The instruction count callgrind reports at exit (``==pid== Collected : N``)."""
    match = re.search(r"Collected : (\d+)", valgrind_log)
    if match is None:
        raise RuntimeError(f"callgrind reported no instruction count; its log ends with: {valgrind_log[-500:]}")
    return int(match.group(1))


def _instructions_of(kind: str, workload: str) -> None:
    """Run under callgrind (see :func:`instruction_counts`): two warm epochs, then one counted epoch."""
    side = (RawLoop if kind == "raw" else TrialLoop)(workload, "cpu", False)
    side.epoch()
    side.epoch()
    _count_instructions(True)
    side.epoch()
    _count_instructions(False)


def _count_instructions(on: bool) -> None:
    switch = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True)
    time.sleep(0.5)  # let valgrind act on the request before the epoch starts (or after it ends)


def timed_epoch_pairs(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Seconds per epoch of the raw loop and of Trial (or, with ``--control``, a second raw loop), run a
    whole epoch at a time: raw, Trial, Trial, raw, raw, Trial ..."""
    raw = RawLoop(args.workload, args.device, args.progress)
    other = (RawLoop if args.control else TrialLoop)(args.workload, args.device, args.progress)
    for _ in range(args.warmup):
        raw.epoch()
        other.epoch()
    raw_times, other_times = [], []
    for pair in range(args.pairs):
        if pair % 2:  # every other pair in the other order, so that neither side always goes first
            other_times.append(_timed_epoch(other))
            raw_times.append(_timed_epoch(raw))
        else:
            raw_times.append(_timed_epoch(raw))
            other_times.append(_timed_epoch(other))
    return raw_times, other_times


def timed_lockstep_pairs(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Seconds per epoch of the raw loop and of Trial (or a second raw loop), run a batch at a time in
    turn: Trial drives, and the raw loop runs one batch after each of Trial's (see :class:`DrivenRawLoop`)."""
    driven = DrivenRawLoop(RawLoop(args.workload, args.device, args.progress))
    if args.control:
        driver: RawLoop | TrialLoop = RawLoop(args.workload, args.device, args.progress)
    else:
        driver = TrialLoop(args.workload, args.device, args.progress, drives=True)
    for _ in range(args.warmup):
        timed_lockstep_epoch(driver, driven)
    times = [timed_lockstep_epoch(driver, driven) for _ in range(args.pairs)]
    return [raw for raw, _ in times], [other for _, other in times]


def median_interval(ratios: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval for the median ratio: how far the noise alone could move it."""
    generator = random.Random(0)
    medians = sorted(statistics.median(generator.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def fastest_ratio(raw_times: list[float], trial_times: list[float], share: float = 0.1) -> float:
    """Trial/raw ratio of the summed fastest ``share`` of each side's epochs (at least one each).

    Noise on a shared machine only ever adds time, so each side's fastest epochs come closest to
    what its code alone costs; this ratio moves far less between runs than the median of pairs.
    """
    count = max(1, round(len(raw_times) * share))
    return sum(sorted(trial_times)[:count]) / sum(sorted(raw_times)[:count])


def compile_contestants(args: argparse.Namespace) -> dict[str, RawLoop | TrialLoop]:
    """The three loops of ``--compile``: the eager raw loop, the raw loop compiled by hand, Trial.with_compile()."""
    compile_kwargs = {} if args.compile == "default" else {"mode": args.compile}
    drives = not args.device.startswith("cuda")
    return {
        "raw eager": RawLoop(args.workload, args.device, args.progress),
        "raw compiled": CompiledRawLoop(args.workload, args.device, args.progress, **compile_kwargs),
        "Trial compiled": TrialLoop(args.workload, args.device, args.progress, drives, compile_kwargs),
    }


def timed_compile_epochs(args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per epoch of the three ``--compile`` loops, all compiled in the warm-up epochs.

    On the CPU Trial drives and the two raw loops each run a batch after each of its batches (as
    :func:`timed_lockstep_pairs`); on a GPU whole epochs alternate, each round in a rotated order.
    """
    loops = compile_contestants(args)
    names = list(loops)
    times: dict[str, list[float]] = {name: [] for name in names}
    if args.device.startswith("cuda"):
        for round_number in range(args.warmup + args.pairs):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                seconds = _timed_epoch(loops[name])
                if round_number >= args.warmup:
                    times[name].append(seconds)
        return times
    raw_loops = (DrivenRawLoop(loops["raw eager"]), DrivenRawLoop(loops["raw compiled"]))
    for round_number in range(args.warmup + args.pairs):
        eager, compiled, trial = timed_lockstep_epoch(loops["Trial compiled"], *raw_loops)
        if round_number >= args.warmup:
            for name, seconds in zip(names, (eager, compiled, trial)):
                times[name].append(seconds)
    return times


def print_compile_table(args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    """Median seconds per epoch of the three loops, and Trial's ratios to each raw loop."""
    print(f"workload={args.workload} device={args.device} compile={args.compile} pairs={args.pairs} "
          f"threads={args.threads} torch={torch.__version__}")  # fmt: skip
    print("| loop           | median s/epoch |")
    print("|----------------|----------------|")
    for name, seconds in times.items():
        print(f"| {name:<14} | {statistics.median(seconds):14.4f} |")
    trial = times["Trial compiled"]
    for name in ("raw eager", "raw compiled"):
        ratios = [t / r for r, t in zip(times[name], trial)]
        low, high = median_interval(ratios)
        print(f"Trial compiled/{name} ratio: median {statistics.median(ratios):.4f}  95% interval of the median "
              f"{low:.4f}-{high:.4f}  min {min(ratios):.4f}  max {max(ratios):.4f}  fastest 10% of epochs "
              f"{fastest_ratio(times[name], trial):.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mlp")
    parser.add_argument("--pairs", type=int, default=15, help="timed (raw, Trial) epoch pairs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first")
    parser.add_argument("--progress", action="store_true", help="tqdm bar on in both loops")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--count", action="store_true", help="also count tensor operations and Python calls")
    parser.add_argument("--control", action="store_true", help="time a second raw loop instead of Trial")
    parser.add_argument(
        "--interleave", choices=["batch", "epoch"], help="alternate the loops every batch (the default on the CPU) "
        "or every epoch (the default, and the only choice, on a GPU)"
    )  # fmt: skip
    parser.add_argument(
        "--compile", nargs="?", const="default", metavar="MODE", help="time Trial.with_compile() against the eager "
        "raw loop and the raw loop compiled the same way (MODE: a torch.compile mode, e.g. reduce-overhead)"
    )  # fmt: skip
    parser.add_argument("--instructions", action="store_true", help="count one epoch's instructions under valgrind")
    parser.add_argument("--peak-of", choices=["raw", "trial"], help=argparse.SUPPRESS)
    parser.add_argument("--instructions-of", choices=["raw", "trial"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak_of:
        _peak_of(args.peak_of, args)
        return
    if args.instructions_of:
        _instructions_of(args.instructions_of, args.workload)
        return
    if args.instructions:
        counts = instruction_counts(args.workload)
        raw_count, trial_count = counts["raw"], counts["trial"]
        print(f"workload={args.workload} instructions per epoch (callgrind): raw {raw_count / 1e6:.1f} M, "
              f"Trial {trial_count / 1e6:.1f} M, Trial/raw {trial_count / raw_count:.4f}")  # fmt: skip
        return

    if args.compile:
        print_compile_table(args, timed_compile_epochs(args))
        return
    interleave = args.interleave or ("epoch" if args.device.startswith("cuda") else "batch")
    if interleave == "batch" and args.device.startswith("cuda"):
        parser.error("--interleave batch times each batch on the host; on a GPU use --interleave epoch")
    timed_pairs = timed_lockstep_pairs if interleave == "batch" else timed_epoch_pairs
    raw_times, trial_times = timed_pairs(args)
    ratios = [t / r for r, t in zip(raw_times, trial_times)]
    low, high = median_interval(ratios)
    raw_peak, trial_peak = peak_memory("raw", args), peak_memory("raw" if args.control else "trial", args)

    label = "raw 2" if args.control else "Trial"
    print(f"workload={args.workload} device={args.device} progress={args.progress} pairs={args.pairs} "
          f"interleave={interleave} threads={args.threads} torch={torch.__version__}")  # fmt: skip
    print("| loop  | median s/epoch | peak memory MiB |")
    print("|-------|----------------|-----------------|")
    print(f"| raw   | {statistics.median(raw_times):14.4f} | {raw_peak:15.1f} |")
    print(f"| {label} | {statistics.median(trial_times):14.4f} | {trial_peak:15.1f} |")
    print(f"{label}/raw ratio: median {statistics.median(ratios):.4f}  95% interval of the median "
          f"{low:.4f}-{high:.4f}  min {min(ratios):.4f}  max {max(ratios):.4f}")  # fmt: skip
    print(f"{label}/raw ratio of each side's fastest 10% of epochs: {fastest_ratio(raw_times, trial_times):.4f}")
    if args.count:
        for name, (operations, calls) in operation_counts(args).items():
            print(f"{name}: {operations:.1f} tensor operations and {calls:.1f} Python calls per batch")


if __name__ == "__main__":
    main()
