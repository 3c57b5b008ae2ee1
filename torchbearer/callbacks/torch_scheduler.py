"""Learning-rate schedulers as callbacks: PyTorch's ``torch.optim.lr_scheduler`` classes, stepped by the Trial.

:class:`TorchScheduler` builds a PyTorch scheduler over the Trial's optimizer when a run starts and
steps it after the optimizer: once per epoch (at ``on_end_epoch``) or once per training batch (at
``on_step_training``). Each wrapper below (:class:`StepLR`, :class:`OneCycleLR`, ...) takes the
keyword arguments of the PyTorch class of the same name, plus ``step_on_batch``.

Resuming is exact: :meth:`TorchScheduler.state_dict` holds the scheduler's own state, so a Trial
saved after epoch ``k`` and loaded into a fresh Trial continues the learning rate as if it had never
stopped, for epoch-stepped and batch-stepped schedules alike.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any, Union

from torch.optim import Optimizer
from torch.optim import lr_scheduler as schedulers

from torchbearer.bases import Callback, get_metric
from torchbearer.callbacks.scheduler_state import (
    group_hyperparameters,
    like_template,
    restore_hyperparameters,
    to_plain,
)
from torchbearer.precision import ends_accumulation
from torchbearer.state import EPOCH, MODEL, OPTIMIZER

SchedulerBuilder = Callable[..., Any]
"""``builder(optimizer, last_epoch=...) -> scheduler`` (or ``builder(optimizer)``)."""

InnerScheduler = Union[SchedulerBuilder, "TorchScheduler"]
"""An entry of :class:`SequentialLR` / :class:`ChainedScheduler`: ``optimizer -> scheduler`` or a wrapper."""


class TorchScheduler(Callback):
    """Build a PyTorch learning-rate scheduler at the start of a run and step it after the optimizer.

    The scheduler is built at ``on_start`` with ``scheduler_builder(optimizer, last_epoch=EPOCH - 1)``
    (or ``scheduler_builder(optimizer)`` when the builder rejects ``last_epoch`` with a ``TypeError``)
    and kept for later ``run`` calls on the same optimizer, so ``run(3)`` followed by ``run(6)`` follows
    one schedule. It steps after the optimizer: at ``on_end_epoch`` or, with ``step_on_batch``, at
    ``on_step_training`` of the batches where the optimizer steps (every batch, or the last of each
    ``with_accumulation`` group: the schedule counts optimizer steps). Nothing steps while the model
    is in eval mode, so ``evaluate`` leaves the schedule alone.

    Resuming: :meth:`state_dict` returns ``{'scheduler': <the scheduler's state>}`` in plain types.
    :meth:`load_state_dict` keeps that state until the next ``on_start``, which builds a fresh
    scheduler, loads the state into it and puts back the optimizer's hyperparameters (learning rate,
    momentum, ...) that building it overwrote. The learning rate is taken from the scheduler's last
    computed value; the other hyperparameters from the optimizer as it was restored
    (``Trial.load_state_dict`` restores the optimizer before any hook runs).

    Args:
        scheduler_builder: ``builder(optimizer, last_epoch=-1) -> scheduler``, e.g.
            ``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=10)``.
        monitor: Metric name whose value is passed to ``scheduler.step(value)`` (for
            ``ReduceLROnPlateau``); ``None`` calls ``scheduler.step()``. A missing metric skips the
            step with a warning.
        step_on_batch: Step after every training batch instead of after every epoch.

    Example:
        >>> from functools import partial
        >>> warmup = TorchScheduler(partial(torch.optim.lr_scheduler.LinearLR, total_iters=100), step_on_batch=True)
        >>> trial = Trial(model, optimizer, loss, callbacks=[warmup])  # doctest: +SKIP
    """

    def __init__(
        self, scheduler_builder: SchedulerBuilder, monitor: str | None = None, step_on_batch: bool = False
    ) -> None:
        self._scheduler_builder = scheduler_builder
        self._monitor = monitor
        self._step_on_batch = step_on_batch
        self._scheduler: Any = None
        self._pending_state: dict | None = None

    @property
    def scheduler(self) -> Any:
        """The PyTorch scheduler in use (``None`` before the first ``on_start``)."""
        return self._scheduler

    def on_start(self, state: dict) -> None:
        optimizer = state[OPTIMIZER]
        if self._pending_state is not None:
            self._scheduler = self._resume(optimizer)
        elif self._scheduler is None or self._scheduler.optimizer is not optimizer:
            self._scheduler = self._build(optimizer, last_epoch=state.get(EPOCH, 0) - 1)

    def on_step_training(self, state: dict) -> None:
        if self._step_on_batch and ends_accumulation(state):  # with gradient accumulation: per optimizer step
            self._step(state)

    def on_end_epoch(self, state: dict) -> None:
        if not self._step_on_batch:
            self._step(state)

    def state_dict(self) -> dict:
        """``{'scheduler': scheduler state}`` in plain types, or ``{}`` before any scheduler exists."""
        if self._pending_state is not None:
            return {"scheduler": copy.deepcopy(self._pending_state)}
        if self._scheduler is None:
            return {}
        return {"scheduler": to_plain(self._scheduler.state_dict())}

    def load_state_dict(self, state_dict: dict) -> TorchScheduler:
        """Keep the saved scheduler state; the next ``on_start`` builds the scheduler and applies it."""
        self._scheduler = None
        self._pending_state = copy.deepcopy(state_dict["scheduler"]) if "scheduler" in state_dict else None
        return self

    def _build(self, optimizer: Optimizer, last_epoch: int) -> Any:
        try:
            return self._scheduler_builder(optimizer, last_epoch=last_epoch)
        except TypeError:  # builders without a last_epoch argument (ReduceLROnPlateau, plain lambdas)
            return self._scheduler_builder(optimizer)

    def _resume(self, optimizer: Optimizer) -> Any:
        """Build a scheduler over ``optimizer`` and continue it from the pending saved state."""
        hyperparameters = group_hyperparameters(optimizer)
        scheduler = self._build(optimizer, last_epoch=-1)
        # like_template builds new containers, so schedulers that pop keys from what they load leave ours intact.
        scheduler.load_state_dict(like_template(scheduler.state_dict(), self._pending_state))
        restore_hyperparameters(optimizer, hyperparameters, scheduler.get_last_lr())
        self._pending_state = None
        return scheduler

    def _step(self, state: dict) -> None:
        if self._scheduler is None or not getattr(state[MODEL], "training", True):
            return
        if self._monitor is None:
            self._scheduler.step()
            return
        # Reading a per-batch metric moves it to the host: one sync per step when a monitored
        # scheduler steps on batches (ReduceLROnPlateau needs the number to compare).
        value = get_metric("Scheduler", state, self._monitor)
        if value is not None:
            self._scheduler.step(value)


def _as_builder(entry: InnerScheduler) -> SchedulerBuilder:
    """The ``optimizer -> scheduler`` function behind an inner-scheduler entry."""
    if isinstance(entry, TorchScheduler):
        return entry._scheduler_builder
    if callable(entry):
        return entry
    raise TypeError(
        f"inner scheduler {entry!r} of type {type(entry).__name__} is neither a function optimizer -> scheduler "
        "nor a torchbearer scheduler callback; pass e.g. "
        "lambda optimizer: torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=5) or LinearLR(total_iters=5)"
    )


def _build_sequential(
    optimizer: Optimizer, builders: list[SchedulerBuilder], milestones: list[int], last_epoch: int = -1
) -> schedulers.SequentialLR:
    inner = [build(optimizer) for build in builders]
    return schedulers.SequentialLR(optimizer, inner, milestones, last_epoch=last_epoch)


def _build_chained(optimizer: Optimizer, builders: list[SchedulerBuilder]) -> schedulers.ChainedScheduler:
    return schedulers.ChainedScheduler([build(optimizer) for build in builders], optimizer=optimizer)


class LambdaLR(TorchScheduler):
    """Learning rate = initial lr x ``lr_lambda(step)`` (``torch.optim.lr_scheduler.LambdaLR``).

    Args:
        lr_lambda: ``step -> factor``, or one such function per param group.
        step_on_batch: Count steps in batches instead of epochs.
    """

    def __init__(self, lr_lambda: Callable[[int], float] | list, step_on_batch: bool = False) -> None:
        super().__init__(functools.partial(schedulers.LambdaLR, lr_lambda=lr_lambda), step_on_batch=step_on_batch)


class MultiplicativeLR(TorchScheduler):
    """Learning rate multiplied by ``lr_lambda(step)`` at each step (``torch.optim.lr_scheduler.MultiplicativeLR``).

    Args:
        lr_lambda: ``step -> factor``, or one such function per param group.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, lr_lambda: Callable[[int], float] | list, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.MultiplicativeLR, lr_lambda=lr_lambda)
        super().__init__(builder, step_on_batch=step_on_batch)


class StepLR(TorchScheduler):
    """Learning rate multiplied by ``gamma`` every ``step_size`` steps (``torch.optim.lr_scheduler.StepLR``).

    Args:
        step_size: Steps (epochs, or batches with ``step_on_batch``) between decays.
        gamma: Decay factor.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, step_size: int, gamma: float = 0.1, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.StepLR, step_size=step_size, gamma=gamma)
        super().__init__(builder, step_on_batch=step_on_batch)


class MultiStepLR(TorchScheduler):
    """Learning rate multiplied by ``gamma`` at each milestone (``torch.optim.lr_scheduler.MultiStepLR``).

    Args:
        milestones: Increasing step indices at which to decay.
        gamma: Decay factor.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.MultiStepLR, milestones=list(milestones), gamma=gamma)
        super().__init__(builder, step_on_batch=step_on_batch)


class ExponentialLR(TorchScheduler):
    """Learning rate multiplied by ``gamma`` at every step (``torch.optim.lr_scheduler.ExponentialLR``).

    Args:
        gamma: Decay factor per step.
        step_on_batch: Step after every batch instead of every epoch.

    Example:
        >>> decay = ExponentialLR(0.999, step_on_batch=True)
    """

    def __init__(self, gamma: float, step_on_batch: bool = False) -> None:
        super().__init__(functools.partial(schedulers.ExponentialLR, gamma=gamma), step_on_batch=step_on_batch)


class CosineAnnealingLR(TorchScheduler):
    """Cosine decay to ``eta_min`` over ``T_max`` steps (``torch.optim.lr_scheduler.CosineAnnealingLR``).

    Args:
        T_max: Steps in half a cosine period.
        eta_min: Lowest learning rate.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, T_max: int, eta_min: float = 0, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.CosineAnnealingLR, T_max=T_max, eta_min=eta_min)
        super().__init__(builder, step_on_batch=step_on_batch)


class CosineAnnealingWarmRestarts(TorchScheduler):
    """Cosine decay restarted every ``T_0 x T_mult^i`` steps (SGDR; ``torch.optim.lr_scheduler``'s class).

    With ``step_on_batch`` the periods count batches.

    Args:
        T_0: Steps in the first period.
        T_mult: Growth factor of the period after each restart.
        eta_min: Lowest learning rate.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, T_0: int, T_mult: int = 1, eta_min: float = 0.0, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.CosineAnnealingWarmRestarts, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
        super().__init__(builder, step_on_batch=step_on_batch)


class LinearLR(TorchScheduler):
    """Learning rate factor moved linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` steps.

    Wraps ``torch.optim.lr_scheduler.LinearLR``; a common warm-up.

    Args:
        start_factor: Factor of the initial lr at the first step.
        end_factor: Factor reached after ``total_iters`` steps.
        total_iters: Steps of the ramp.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(
        self, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5, step_on_batch: bool = False
    ) -> None:
        builder = functools.partial(
            schedulers.LinearLR, start_factor=start_factor, end_factor=end_factor, total_iters=total_iters
        )
        super().__init__(builder, step_on_batch=step_on_batch)


class PolynomialLR(TorchScheduler):
    """Polynomial decay to zero over ``total_iters`` steps (``torch.optim.lr_scheduler.PolynomialLR``).

    Args:
        total_iters: Steps of the decay.
        power: Power of the polynomial.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, total_iters: int = 5, power: float = 1.0, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.PolynomialLR, total_iters=total_iters, power=power)
        super().__init__(builder, step_on_batch=step_on_batch)


class ConstantLR(TorchScheduler):
    """Learning rate scaled by ``factor`` for the first ``total_iters`` steps (``torch.optim.lr_scheduler.ConstantLR``).

    Args:
        factor: Scale applied until ``total_iters``.
        total_iters: Steps before the initial lr is restored.
        step_on_batch: Step after every batch instead of every epoch.
    """

    def __init__(self, factor: float = 1.0 / 3, total_iters: int = 5, step_on_batch: bool = False) -> None:
        builder = functools.partial(schedulers.ConstantLR, factor=factor, total_iters=total_iters)
        super().__init__(builder, step_on_batch=step_on_batch)


class OneCycleLR(TorchScheduler):
    """The 1cycle policy: warm up to ``max_lr`` then anneal far below it (``torch.optim.lr_scheduler.OneCycleLR``).

    Steps on batches by default, as the policy is defined per batch. Give ``total_steps``, or
    ``epochs`` and ``steps_per_epoch``; stepping past the end raises PyTorch's ``ValueError``.

    Args:
        max_lr: Peak learning rate (or one per param group).
        total_steps: Steps in the cycle.
        epochs: With ``steps_per_epoch``, defines ``total_steps = epochs * steps_per_epoch``.
        steps_per_epoch: Batches per epoch.
        pct_start: Fraction of the cycle spent increasing the lr.
        anneal_strategy: ``'cos'`` or ``'linear'``.
        cycle_momentum: Cycle momentum (or Adam's beta1) inversely to the lr.
        base_momentum: Lowest momentum.
        max_momentum: Highest momentum.
        div_factor: Initial lr = ``max_lr / div_factor``.
        final_div_factor: Final lr = initial lr / ``final_div_factor``.
        three_phase: Use the three-phase variant (symmetric warm-up and cool-down, then annihilation).
        step_on_batch: Step after every batch (default) instead of every epoch.

    Example:
        >>> one_cycle = OneCycleLR(max_lr=0.1, epochs=10, steps_per_epoch=len(train_loader))  # doctest: +SKIP
    """

    def __init__(
        self,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        step_on_batch: bool = True,
    ) -> None:
        builder = functools.partial(
            schedulers.OneCycleLR,
            max_lr=max_lr,
            total_steps=total_steps,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
        )
        super().__init__(builder, step_on_batch=step_on_batch)


class ReduceLROnPlateau(TorchScheduler):
    """Reduce the learning rate when a monitored metric stops improving (``torch.optim.lr_scheduler``'s class).

    Args:
        monitor: Metric to watch, e.g. ``'val_loss'``.
        mode: ``'min'`` (lower is better) or ``'max'``.
        factor: New lr = lr x ``factor``.
        patience: Non-improving steps tolerated before reducing.
        verbose: Accepted for compatibility and ignored (recent PyTorch removed it).
        threshold: Smallest change that counts as an improvement.
        threshold_mode: ``'rel'`` or ``'abs'``.
        cooldown: Steps to wait after a reduction before counting again.
        min_lr: Lower bound on the lr (or one per param group).
        eps: Reductions smaller than this are skipped.
        step_on_batch: Step after every batch (reading ``monitor`` from the batch metrics).

    Example:
        >>> plateau = ReduceLROnPlateau(monitor='val_loss', factor=0.1, patience=5)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        verbose: bool = False,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
        step_on_batch: bool = False,
    ) -> None:
        builder = functools.partial(
            schedulers.ReduceLROnPlateau,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        super().__init__(builder, monitor=monitor, step_on_batch=step_on_batch)


class CyclicLR(TorchScheduler):
    """Cycle the learning rate between ``base_lr`` and ``max_lr`` (``torch.optim.lr_scheduler.CyclicLR``).

    The policy is defined per batch, so pass ``step_on_batch=True`` unless the step sizes count
    epochs. ``monitor`` is accepted for compatibility and ignored: the cycle needs no metric.

    Args:
        base_lr: Lower bound of the cycle (or one per param group).
        max_lr: Upper bound of the cycle (or one per param group).
        monitor: Ignored.
        step_size_up: Steps from ``base_lr`` up to ``max_lr``.
        step_size_down: Steps back down (``None``: same as up).
        mode: ``'triangular'``, ``'triangular2'`` or ``'exp_range'``.
        gamma: Decay constant of ``'exp_range'``.
        scale_fn: Custom amplitude scaling ``x -> factor`` (overrides ``mode``).
        scale_mode: ``'cycle'`` or ``'iterations'``: what ``scale_fn`` receives.
        cycle_momentum: Cycle momentum inversely to the lr.
        base_momentum: Lowest momentum.
        max_momentum: Highest momentum.
        step_on_batch: Step after every batch instead of every epoch.

    Example:
        >>> cyclic = CyclicLR(base_lr=1e-3, max_lr=1e-1, step_size_up=500, step_on_batch=True)
    """

    def __init__(
        self,
        base_lr: float | list[float],
        max_lr: float | list[float],
        monitor: str | None = "val_loss",
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        step_on_batch: bool = False,
    ) -> None:
        builder = functools.partial(
            schedulers.CyclicLR,
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            gamma=gamma,
            scale_fn=scale_fn,
            scale_mode=scale_mode,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
        )
        super().__init__(builder, step_on_batch=step_on_batch)


class SequentialLR(TorchScheduler):
    """Run inner schedulers one after another, switching at the milestones (``torch.optim.lr_scheduler``'s class).

    Each inner scheduler is given either as a function ``optimizer -> scheduler`` or as one of the
    wrappers in this module (only its scheduler settings are used; this callback's ``step_on_batch``
    decides when everything steps).

    Args:
        schedulers: The inner schedulers, in order.
        milestones: Step indices at which to move to the next scheduler (one fewer than schedulers).
        step_on_batch: Step after every batch instead of every epoch.

    Example:
        >>> warmup_then_decay = SequentialLR(
        ...     [LinearLR(start_factor=0.1, total_iters=5),
        ...      lambda optimizer: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)],
        ...     milestones=[5],
        ... )
    """

    def __init__(
        self, schedulers: Sequence[InnerScheduler], milestones: Sequence[int], step_on_batch: bool = False
    ) -> None:
        builders = [_as_builder(entry) for entry in schedulers]
        builder = functools.partial(_build_sequential, builders=builders, milestones=list(milestones))
        super().__init__(builder, step_on_batch=step_on_batch)


class ChainedScheduler(TorchScheduler):
    """Step several schedulers together, each applying its factor in turn (``torch.optim.lr_scheduler``'s class).

    Inner schedulers are given as for :class:`SequentialLR`: functions ``optimizer -> scheduler``
    or wrappers from this module.

    Args:
        schedulers: The inner schedulers, applied in order at every step.
        step_on_batch: Step after every batch instead of every epoch.

    Example:
        >>> constant_then_decay = ChainedScheduler([ConstantLR(factor=0.1, total_iters=2), ExponentialLR(0.9)])
    """

    def __init__(self, schedulers: Sequence[InnerScheduler], step_on_batch: bool = False) -> None:
        builders = [_as_builder(entry) for entry in schedulers]
        super().__init__(functools.partial(_build_chained, builders=builders), step_on_batch=step_on_batch)
