"""Progress printers: :class:`ConsolePrinter` (plain text lines) and :class:`Tqdm` (progress bars).

During a pass ``state[METRICS]`` holds device tensors that are only read on demand; reading them
is a host-device synchronisation. So both printers refresh their per-batch metric text at most
every :attr:`refresh_interval` seconds of wall time (and always at the end of a pass), which keeps
their per-batch cost to a clock read and, for :class:`Tqdm`, tqdm's own counter update.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Mapping
from typing import Any, Optional

import torchbearer.state as _keys
from torchbearer import magics
from torchbearer.bases import Callback
from torchbearer.distributed import is_rank_zero
from torchbearer.metric_values import to_python

_STEP_KEYS = ("train_steps", "validation_steps")


def _round(value: Any, precision: int) -> Any:
    if isinstance(value, (list, tuple)):
        return [_round(item, precision) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return round(value, precision)
    return value


def _format_metrics(metrics: Mapping, precision: int) -> str:
    """``key=value`` pairs sorted by key; numbers rounded to ``precision`` (lists element-wise).

    Tensor values are moved to the host together (one synchronisation per device). The history's
    step counts (in the metrics during ``replay``) are not metrics and are left out.
    """
    values = to_python(metrics)
    keys = sorted((key for key in values if key not in _STEP_KEYS), key=str)
    return ", ".join(f"{key}={_round(values[key], precision)}" for key in keys)


def _description(state: Mapping, letter: str) -> str:
    return f"{state[_keys.EPOCH]}/{state[_keys.MAX_EPOCHS]}({letter})"


class _Throttle:
    """Says yes at most once per ``interval`` seconds of wall time (the first ask after a reset is a yes)."""

    def __init__(self) -> None:
        self._next = -math.inf

    def reset(self) -> None:
        self._next = -math.inf

    def ready(self, interval: float) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + interval
        return True


class ConsolePrinter(Callback):
    """Print progress and metrics as text lines on stdout.

    During a pass it rewrites one line (leading ``\\r``) as
    ``"{epoch}/{max_epochs}(t): {batch}/{steps} {metrics}"``, at most every
    :attr:`refresh_interval` seconds; at the end of the pass it prints
    ``"{epoch}/{max_epochs}(t): {metrics}"`` with the final metrics and a newline. Validation uses
    ``validation_label_letter`` instead of ``t``. Metrics are ``key=value`` pairs sorted by key,
    numbers rounded to ``precision`` places.

    Args:
        validation_label_letter: Letter shown for validation passes (``'e'`` for evaluate,
            ``'p'`` for predict).
        precision: Decimal places for metric values.

    Example:
        >>> trial = Trial(model, optimizer, loss, metrics=['acc'], callbacks=[ConsolePrinter()], verbose=0)
        >>> # 0/2(t): acc=0.25, loss=1.1236, running_acc=0.0, running_loss=1.1919
    """

    refresh_interval: float = 0.5
    """Least wall time in seconds between two per-batch lines."""

    def __init__(self, validation_label_letter: str = "v", precision: int = 4) -> None:
        self.validation_label_letter = validation_label_letter
        self.precision = precision
        self._throttle = _Throttle()

    def _step(self, state: Mapping, letter: str) -> None:
        if self._throttle.ready(self.refresh_interval) and is_rank_zero():
            metrics = _format_metrics(state[_keys.METRICS], self.precision)
            line = f"\r{_description(state, letter)}: {state[_keys.BATCH]}/{state[_keys.STEPS]} {metrics}"
            print(line, end="", flush=True)

    def _end(self, state: Mapping, letter: str) -> None:
        if not is_rank_zero():  # in a distributed run only rank zero prints
            return
        print(f"\r{_description(state, letter)}: {_format_metrics(state[_keys.METRICS], self.precision)}")

    def on_start_training(self, state: dict) -> None:
        self._throttle.reset()

    def on_step_training(self, state: dict) -> None:
        self._step(state, "t")

    def on_end_training(self, state: dict) -> None:
        self._end(state, "t")

    def on_start_validation(self, state: dict) -> None:
        self._throttle.reset()

    def on_step_validation(self, state: dict) -> None:
        self._step(state, self.validation_label_letter)

    def on_end_validation(self, state: dict) -> None:
        self._end(state, self.validation_label_letter)


def _default_tqdm() -> Any:
    """``tqdm.notebook.tqdm`` in a notebook (see :mod:`torchbearer.magics`), else ``tqdm.tqdm``.

    Notebook bars need ``ipywidgets``; without it this warns and falls back to text bars.
    """
    from tqdm import tqdm

    if not magics.is_notebook():
        return tqdm
    from tqdm import notebook

    if notebook.IProgress is None:
        warnings.warn(
            "notebook progress bars need ipywidgets, which is not installed; showing text bars instead. "
            "Install it with: pip install ipywidgets (or switch off notebook mode with %torchbearer normal)",
            stacklevel=3,
        )
        return tqdm
    return notebook.tqdm


class Tqdm(Callback):
    """Show progress as tqdm bars (on stderr by default), with the metrics as the bar's postfix.

    With ``on_epoch=False`` (``verbose=2``) there is one bar per pass: ``total`` is the pass's
    steps, the description is ``"{epoch}/{max_epochs}(t)"`` for training and uses
    ``validation_label_letter`` for validation. It advances every batch; the metric postfix is
    refreshed at most every :attr:`refresh_interval` seconds, and set to the final metrics when the
    pass ends and the bar closes.

    With ``on_epoch=True`` (``verbose=1``) there is one bar per call over the epochs: ``total`` is
    ``MAX_EPOCHS`` and it starts at the first epoch the call runs (``len(history)`` when a ``run``
    resumes, showing the last history record at once); it advances and shows the epoch's metrics at
    every ``on_end_epoch`` and closes at ``on_end``. The bar is created at the first epoch, so an
    ``evaluate``/``predict`` after training counts 0/1 to 1/1 and ``replay`` counts from 0.

    Args:
        tqdm_module: The bar class, e.g. ``tqdm.tqdm``; default ``tqdm.notebook.tqdm`` when
            :func:`torchbearer.magics.is_notebook` is true, else ``tqdm.tqdm``.
        validation_label_letter: Letter in validation bar descriptions (``'e'`` for evaluate,
            ``'p'`` for predict).
        precision: Decimal places for metric values.
        on_epoch: One bar over the epochs instead of one per pass.
        **tqdm_args: Passed to every bar (``file=``, ``leave=``, ``mininterval=``, ...); they take
            precedence over the values above.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[Tqdm(file=sys.stdout, ncols=100)], verbose=0)
    """

    refresh_interval: float = 0.5
    """Least wall time in seconds between two per-batch postfix refreshes."""

    def __init__(
        self,
        tqdm_module: Any = None,
        validation_label_letter: str = "v",
        precision: int = 4,
        on_epoch: bool = False,
        **tqdm_args: Any,
    ) -> None:
        self.tqdm_module = tqdm_module if tqdm_module is not None else _default_tqdm()
        self.validation_label_letter = validation_label_letter
        self.precision = precision
        self.on_epoch = on_epoch
        self.tqdm_args = tqdm_args
        self._bar: Optional[Any] = None
        self._throttle = _Throttle()

    def _new_bar(self, **kwargs: Any) -> Any:
        return self.tqdm_module(**{**kwargs, **self.tqdm_args})

    def _close(self, postfix: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.close()
            self._bar = None

    # one bar per pass (on_epoch=False)

    def _start_pass(self, state: Mapping, letter: str) -> None:
        if self.on_epoch or not is_rank_zero():  # in a distributed run only rank zero shows bars
            return
        steps = state[_keys.STEPS]
        total = steps if isinstance(steps, int) and steps >= 0 else None
        self._bar = self._new_bar(total=total, desc=_description(state, letter))
        self._throttle.reset()

    def _step(self, state: Mapping) -> None:
        if self.on_epoch or self._bar is None:
            return
        if self._throttle.ready(self.refresh_interval):
            self._bar.set_postfix_str(_format_metrics(state[_keys.METRICS], self.precision), refresh=False)
        self._bar.update(1)

    def _end_pass(self, state: Mapping) -> None:
        if not self.on_epoch:
            self._close(_format_metrics(state[_keys.METRICS], self.precision))

    def on_start_training(self, state: dict) -> None:
        self._start_pass(state, "t")

    def on_step_training(self, state: dict) -> None:
        self._step(state)

    def on_end_training(self, state: dict) -> None:
        self._end_pass(state)

    def on_start_validation(self, state: dict) -> None:
        self._start_pass(state, self.validation_label_letter)

    def on_step_validation(self, state: dict) -> None:
        self._step(state)

    def on_end_validation(self, state: dict) -> None:
        self._end_pass(state)

    # one bar per call (on_epoch=True); on_start serves both modes

    def on_start(self, state: dict) -> None:
        if self._bar is not None:  # left open by a call that raised
            self._bar.close()
            self._bar = None

    def on_start_epoch(self, state: dict) -> None:
        if not self.on_epoch or self._bar is not None or not is_rank_zero():
            return
        epoch = state[_keys.EPOCH]
        self._bar = self._new_bar(total=state[_keys.MAX_EPOCHS], initial=epoch)
        history = state.get(_keys.HISTORY) or []
        if 0 < epoch <= len(history):  # resuming: show where the previous run ended
            self._bar.set_postfix_str(_format_metrics(history[epoch - 1], self.precision))

    def on_end_epoch(self, state: dict) -> None:
        if self.on_epoch and self._bar is not None:
            self._bar.set_postfix_str(_format_metrics(state[_keys.METRICS], self.precision), refresh=False)
            self._bar.update(1)

    def on_end(self, state: dict) -> None:
        if self.on_epoch and self._bar is not None:
            self._bar.close()
            self._bar = None
