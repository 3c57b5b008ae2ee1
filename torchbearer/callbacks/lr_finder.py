"""The learning-rate range test (Smith 2017; popularised by fastai): sweep the lr, watch the loss.

Train for a few batches while the learning rate grows exponentially from ``start_lr`` to ``end_lr``,
record the (smoothed) loss at each rate, and pick a rate a little before the loss blows up. The
test changes the weights, so the model and optimizer are put back as they were when it ends.

Two ways to run it:

* :func:`find_lr` on a configured Trial: runs the test with none of the Trial's own callbacks and
  leaves the Trial as it found it.
* :class:`LRFinder` as a callback in any Trial: it stops training when the sweep ends and restores
  the model, the optimizer and the history at ``on_end``; afterwards it does nothing, so the same
  Trial can go on to train for real.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from torchbearer.bases import Callback
from torchbearer.callbacks.callbacks import CallbackList
from torchbearer.metrics import MetricList
from torchbearer.state import (
    CALLBACK_LIST,
    HISTORY,
    LOSS,
    METRIC_LIST,
    MODEL,
    OPTIMIZER,
    STOP_TRAINING,
    TRAIN_STEPS,
    VALIDATION_GENERATOR,
    VALIDATION_STEPS,
)


class LRFinder(Callback):
    """Run the learning-rate range test over the training batches of a ``run``.

    Before each training batch every param group's lr is set to the next rate of an exponential
    sweep from ``start_lr`` to ``end_lr`` over ``num_steps`` batches (so schedulers cannot move it).
    After each batch the loss is recorded and smoothed with an exponential moving average
    (bias-corrected). Training stops when the sweep is complete or when the smoothed loss exceeds
    ``divergence_threshold`` times the best smoothed loss so far (or is not finite). At ``on_end`` the
    model weights, the optimizer state (lrs included) and the history are restored to what they were
    at ``on_start``. The finder runs once: later runs of the same Trial are left alone. Other
    callbacks and metrics of that Trial do see the test's batches (a running mean averages them, a
    scheduler steps); :func:`find_lr` avoids this.

    The divergence test reads each batch's loss on the host: one device sync per batch, for
    ``num_steps`` batches at most.

    Args:
        start_lr: First learning rate of the sweep.
        end_lr: Last learning rate of the sweep.
        num_steps: Number of batches (rates) in the sweep; ``run`` enough epochs to cover them.
        smooth: Weight of the past in the loss moving average (0 keeps the raw losses).
        divergence_threshold: Stop once the smoothed loss exceeds this multiple of the best one.

    Attributes:
        lrs: The rate used for each recorded batch.
        losses: The smoothed loss after each recorded batch.
        raw_losses: The loss of each recorded batch.
        diverged: Whether the test stopped early because the loss diverged.

    Example:
        >>> finder = LRFinder(start_lr=1e-6, end_lr=1, num_steps=50)
        >>> trial = Trial(model, optimizer, loss, callbacks=[finder]).with_train_generator(loader)  # doctest: +SKIP
        >>> trial.run(epochs=50, verbose=0)  # stops by itself after 50 batches  # doctest: +SKIP
        >>> finder.plot('lr_finder.png'); lr = finder.suggestion()  # doctest: +SKIP
    """

    def __init__(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_steps: int = 100,
        smooth: float = 0.98,
        divergence_threshold: float = 4.0,
    ) -> None:
        _check_arguments(start_lr, end_lr, num_steps, smooth, divergence_threshold)
        self.start_lr = start_lr
        self.end_lr = end_lr
        self.num_steps = num_steps
        self.smooth = smooth
        self.divergence_threshold = divergence_threshold
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.raw_losses: list[float] = []
        self.diverged = False
        self._finished = False
        self._running = False
        self._average = 0.0
        self._best = math.inf
        self._snapshot: dict[str, Any] = {}

    def rate(self, step: int) -> float:
        """The learning rate used at batch ``step`` of the sweep (0-based)."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))

    def on_start(self, state: dict) -> None:
        if self._finished:
            return
        self._running = True
        self._snapshot = {
            "model": _host_copy(state[MODEL].state_dict()),
            "optimizer": _host_copy(state[OPTIMIZER].state_dict()),
            "history_length": len(state[HISTORY]) if HISTORY in state else 0,
        }

    def on_sample(self, state: dict) -> None:
        if self._running:
            for group in state[OPTIMIZER].param_groups:
                group["lr"] = self.rate(len(self.lrs))

    def on_step_training(self, state: dict) -> None:
        if not self._running:
            return
        # The divergence test needs the loss as a number: a host-device sync every batch of the test.
        loss = float(state[LOSS].detach())
        self.lrs.append(self.rate(len(self.lrs)))
        self.raw_losses.append(loss)
        self._average = self.smooth * self._average + (1 - self.smooth) * loss
        smoothed = self._average / (1 - self.smooth ** len(self.lrs))
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        self.diverged = not math.isfinite(smoothed) or smoothed > self.divergence_threshold * self._best
        if self.diverged or len(self.lrs) >= self.num_steps:
            state[STOP_TRAINING] = True

    def on_end(self, state: dict) -> None:
        if not self._running:
            return
        self._running = False
        self._finished = True
        state[MODEL].load_state_dict(self._snapshot["model"])
        state[OPTIMIZER].load_state_dict(self._snapshot["optimizer"])
        if HISTORY in state:
            del state[HISTORY][self._snapshot["history_length"] :]
        self._snapshot = {}
        if not self.diverged and len(self.lrs) < self.num_steps:
            warnings.warn(
                f"LRFinder: the run ended after {len(self.lrs)} of {self.num_steps} sweep batches; run more epochs "
                f"(at least num_steps / batches per epoch) to reach end_lr={self.end_lr}",
                stacklevel=2,
            )

    def suggestion(self, method: str = "steepest") -> float:
        """Suggest a learning rate from the recorded curve.

        Args:
            method: ``'steepest'``: the rate where the smoothed loss falls fastest against log(lr);
                ``'minimum'``: the rate of the lowest smoothed loss, divided by 10.

        Returns:
            The suggested learning rate.

        Raises:
            ValueError: With fewer than two recorded batches, or an unknown ``method``.
        """
        if len(self.lrs) < 2:
            raise ValueError(
                f"LRFinder.suggestion needs at least 2 recorded batches, got {len(self.lrs)}; run the range test "
                "first (find_lr(trial) or a Trial run with this callback)"
            )
        if method == "steepest":
            slopes = np.gradient(np.asarray(self.losses), np.log(np.asarray(self.lrs)))
            return self.lrs[int(np.nanargmin(slopes))]
        if method == "minimum":
            return self.lrs[int(np.nanargmin(np.asarray(self.losses)))] / 10
        raise ValueError(f"LRFinder.suggestion: unknown method {method!r}; use 'steepest' or 'minimum'")

    def plot(self, path: str | None = None) -> Any:
        """Draw the smoothed loss against the learning rate (log scale), marking the suggestion.

        Args:
            path: Where to write the figure as a PNG; ``None`` writes nothing.

        Returns:
            The ``matplotlib.figure.Figure`` (displayed inline when returned in a notebook).

        Raises:
            ImportError: If matplotlib is not installed.
            ValueError: Before the range test has recorded any batch.
        """
        if not self.lrs:
            raise ValueError("LRFinder.plot: nothing recorded yet; run the range test first")
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                "LRFinder.plot needs matplotlib; install it with: pip install torchbearer[plots]"
            ) from error
        figure = Figure(figsize=(6, 4))
        axes = figure.add_subplot(1, 1, 1)
        axes.plot(self.lrs, self.losses, label="smoothed loss")
        if len(self.lrs) >= 2:
            axes.axvline(self.suggestion(), color="tab:red", linestyle="--", label="suggestion (steepest)")
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("loss")
        axes.legend()
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, format="png")
        return figure


def find_lr(
    trial: Any,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smooth: float = 0.98,
    divergence_threshold: float = 4.0,
    callbacks: Iterable[Callback] = (),
    verbose: int = 0,
) -> LRFinder:
    """Run the learning-rate range test on a configured Trial and leave the Trial as it was.

    The test trains on the Trial's training data for up to ``num_steps`` batches (across epochs if
    needed), skipping validation. The Trial's own callbacks and metrics are left out (checkpointers,
    loggers and schedulers must not act on a test, running metrics must not average its batches);
    pass in ``callbacks`` those that shape the loss (e.g. an ``add_to_loss`` callback). Afterwards the
    model weights, optimizer state, history, callbacks, metrics and validation settings are what
    they were.

    Args:
        trial: A Trial with a model, optimizer, criterion and training data.
        start_lr: First learning rate of the sweep.
        end_lr: Last learning rate of the sweep.
        num_steps: Number of batches (rates) in the sweep.
        smooth: Weight of the past in the loss moving average.
        divergence_threshold: Stop once the smoothed loss exceeds this multiple of the best one.
        callbacks: Extra callbacks to run during the test, after the finder.
        verbose: Progress printing for the test's run (0 silent, as in ``Trial.run``).

    Returns:
        The :class:`LRFinder` holding ``lrs``, ``losses``, ``suggestion()`` and ``plot()``.

    Raises:
        ValueError: If the Trial has no training data or steps, or an argument is out of range.

    Example:
        >>> trial = Trial(model, optimizer, nn.CrossEntropyLoss()).with_train_generator(loader)  # doctest: +SKIP
        >>> finder = find_lr(trial, end_lr=1, num_steps=50)  # doctest: +SKIP
        >>> finder.plot('lr_finder.png')  # doctest: +SKIP
        >>> for group in optimizer.param_groups: group['lr'] = finder.suggestion()  # doctest: +SKIP
        >>> trial.run(10)  # doctest: +SKIP
    """
    finder = LRFinder(start_lr, end_lr, num_steps, smooth, divergence_threshold)
    state = trial.state
    if state[TRAIN_STEPS] in (None, 0):
        raise ValueError(
            f"find_lr needs training batches, but the trial's train steps are {state[TRAIN_STEPS]!r}; "
            "call trial.with_train_generator(loader) or trial.with_train_data(x, y) first"
        )
    saved = {key: state[key] for key in (CALLBACK_LIST, METRIC_LIST, VALIDATION_GENERATOR, VALIDATION_STEPS)}
    state[CALLBACK_LIST] = CallbackList([finder, *callbacks])
    state[METRIC_LIST] = MetricList([])  # running metrics must not see the test's batches
    state[VALIDATION_GENERATOR] = state[VALIDATION_STEPS] = None
    try:
        # Every epoch has at least one batch and the finder stops the run itself after num_steps.
        trial.run(len(state[HISTORY]) + num_steps, verbose=verbose)
    finally:
        state.update(saved)
    return finder


def _check_arguments(
    start_lr: float, end_lr: float, num_steps: int, smooth: float, divergence_threshold: float
) -> None:
    if not 0 < start_lr < end_lr:
        raise ValueError(f"LRFinder needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 2:
        raise ValueError(f"LRFinder needs num_steps >= 2 to sweep from start_lr to end_lr, got {num_steps}")
    if not 0 <= smooth < 1:
        raise ValueError(f"LRFinder needs 0 <= smooth < 1 (the moving average's weight of the past), got {smooth}")
    if divergence_threshold <= 1:
        raise ValueError(
            f"LRFinder needs divergence_threshold > 1 (a multiple of the best loss), got {divergence_threshold}"
        )


def _host_copy(value: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copied = OrderedDict((key, _host_copy(item)) for key, item in value.items())
        if hasattr(value, "_metadata"):  # module versions, read by load_state_dict
            copied._metadata = value._metadata
        return copied
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(item) for item in value)
    return value
