"""``TimerMetric``: how long each phase of the fitting loop takes, as a callback and a metric."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from torchbearer.bases import Callback, Metric
from torchbearer.state import CALLBACK_LIST, TIMINGS

ON_START_TRAINING = "on_start_training"
ON_START_EPOCH = "on_start_epoch"
ON_SAMPLE = "on_sample"
ON_FORWARD = "on_forward"
ON_CRITERION = "on_criterion"
ON_BACKWARD = "on_backward"
ON_STEP_TRAINING = "on_step_training"
ON_START_VALIDATION = "on_start_validation"
ON_SAMPLE_VALIDATION = "on_sample_validation"
ON_FORWARD_VALIDATION = "on_forward_validaiton"  # the 0.5 spelling; 'on_forward_validation' is accepted too
ON_CRITERION_VALIDATION = "on_criterion_validation"
ON_STEP_VALIDATION = "on_step_validation"
TRAIN_TIME = "train_time"
TOTAL_TIME = "total_time"
VALIDATION_TIME = "validation_time"

_ALIASES = {"on_forward_validation": ON_FORWARD_VALIDATION}


class TimerMetric(Callback, Metric):
    """Wall-clock seconds spent in each phase of the loop, in ``state[TIMINGS]`` and :meth:`get_timings`.

    A per-batch hook's key (``on_sample``, ``on_forward``, ...) holds the time since the previous
    hook, i.e. how long the phase ending there took (loading, forward, criterion, backward, step and
    metrics). ``on_start_epoch`` / ``on_start_training`` / ``on_start_validation`` hold the time since
    the previous hook too; ``train_time`` and ``validation_time`` the length of the last pass;
    ``total_time`` the time since the start of the call. The dict is printed at ``on_end``.

    Used as a metric, :meth:`process` reports the timings named in ``time_keys`` every batch. When
    first reset inside a Trial it adds itself to the callback list, so listing it under
    ``metrics=`` is enough. Times are host clock readings: on an asynchronous device they measure
    when work was queued unless something waits for the device.

    Args:
        time_keys: Timing keys (the constants of this module) to report as metrics.

    Example:
        >>> timer = TimerMetric(time_keys=(ON_FORWARD, TRAIN_TIME))  # doctest: +SKIP
        >>> Trial(model, optimizer, criterion, metrics=['loss', timer]).run(1)  # doctest: +SKIP
    """

    def __init__(self, time_keys: Iterable[str] = ()) -> None:
        Metric.__init__(self, "timer")
        self.time_keys = tuple(time_keys)
        self._sources = [(key, _ALIASES.get(key, key)) for key in self.time_keys]
        self._timings: dict[str, float] = {}
        self._started: float | None = None
        self._last: float | None = None
        self._pass_start: float | None = None

    def __str__(self) -> str:
        return self.name

    def get_timings(self) -> dict[str, float]:
        """The latest timings, keyed by the constants of this module."""
        return self._timings

    def process(self, *args: Any) -> dict[str, float]:
        return {key: self._timings[source] for key, source in self._sources if source in self._timings}

    def reset(self, state: Any) -> None:
        if self._started is None:
            self._start()
        if CALLBACK_LIST in state:
            callback_list = state[CALLBACK_LIST]
            if not any(callback is self for callback in callback_list):
                callback_list.append([self])

    def _start(self) -> None:
        self._started = self._last = self._pass_start = time.perf_counter()

    def _record(self, state: Any, key: str, since: float | None) -> float:
        """Store the seconds from ``since`` to now under ``key``; returns now."""
        now = time.perf_counter()
        self._timings[key] = now - (since if since is not None else now)
        self._last = now
        state[TIMINGS] = self._timings
        return now

    def _lap(self, state: Any, key: str) -> float:
        """Store the time since the previous hook under ``key``; returns now."""
        return self._record(state, key, self._last)

    def on_start(self, state: Any) -> None:
        self._start()
        state[TIMINGS] = self._timings

    def on_start_epoch(self, state: Any) -> None:
        self._lap(state, ON_START_EPOCH)

    def on_start_training(self, state: Any) -> None:
        self._pass_start = self._lap(state, ON_START_TRAINING)

    def on_sample(self, state: Any) -> None:
        self._lap(state, ON_SAMPLE)

    def on_forward(self, state: Any) -> None:
        self._lap(state, ON_FORWARD)

    def on_criterion(self, state: Any) -> None:
        self._lap(state, ON_CRITERION)

    def on_backward(self, state: Any) -> None:
        self._lap(state, ON_BACKWARD)

    def on_step_training(self, state: Any) -> None:
        self._lap(state, ON_STEP_TRAINING)

    def on_end_training(self, state: Any) -> None:
        self._record(state, TRAIN_TIME, self._pass_start)

    def on_start_validation(self, state: Any) -> None:
        self._pass_start = self._lap(state, ON_START_VALIDATION)

    def on_sample_validation(self, state: Any) -> None:
        self._lap(state, ON_SAMPLE_VALIDATION)

    def on_forward_validation(self, state: Any) -> None:
        self._lap(state, ON_FORWARD_VALIDATION)

    def on_criterion_validation(self, state: Any) -> None:
        self._lap(state, ON_CRITERION_VALIDATION)

    def on_step_validation(self, state: Any) -> None:
        self._lap(state, ON_STEP_VALIDATION)

    def on_end_validation(self, state: Any) -> None:
        self._record(state, VALIDATION_TIME, self._pass_start)

    def on_end_epoch(self, state: Any) -> None:
        self._record(state, TOTAL_TIME, self._started)

    def on_end(self, state: Any) -> None:
        self._record(state, TOTAL_TIME, self._started)
        print(self._timings)
