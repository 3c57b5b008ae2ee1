"""``LiveLossPlot``: live plots of the metrics through the ``livelossplot`` package."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torchbearer
from torchbearer.bases import Callback
from torchbearer.distributed import is_rank_zero
from torchbearer.metric_values import to_python

_HEADLESS_BACKENDS = frozenset({"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"})


def _import_plot_losses() -> Any:
    try:
        from livelossplot import PlotLosses
    except ImportError as error:
        raise ImportError("LiveLossPlot needs livelossplot; install it with: pip install torchbearer[plots]") from error
    return PlotLosses


def _numbers_only(metrics: dict) -> dict:
    """Keep the values livelossplot can draw (numbers), dropping lists, strings and ``None``."""
    return {
        str(key): value
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def _send_quietly(plotter: Any) -> None:
    """Draw ``plotter`` with stdout silenced; on a headless backend, close the figures it opened.

    livelossplot opens a new pyplot figure per draw; on a backend that cannot show it (Agg on a
    server) nobody would ever close it, so figures and memory would pile up over a run.
    """
    if not is_rank_zero():  # in a distributed run only rank zero draws
        return
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    with contextlib.redirect_stdout(io.StringIO()):
        plotter.send()
    if plt.get_backend().lower() in _HEADLESS_BACKENDS:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


class LiveLossPlot(Callback):
    """Plot the metrics live (in a notebook or a window) with ``livelossplot``.

    Two plotters are made at ``on_start``: one for epochs (a point per epoch) and one for
    training batches (a point per step). Extra keyword arguments go to both
    ``livelossplot.PlotLosses`` constructors, e.g. ``outputs=[MatplotlibPlot(figpath='loss_{i}.png')]``
    to also save each drawing to a file.

    Batch values stay on the device until they are drawn: they are moved to the host together,
    once per drawing and once at the end of each training pass, never once per batch.

    Args:
        on_batch: Plot the training metrics of every batch.
        batch_step_size: With ``on_batch``, redraw every this many batches.
        on_epoch: Plot the metrics of every epoch (training and validation).
        draw_once: Draw nothing during the run, only once at ``on_end``.
        **kwargs: Passed to ``livelossplot.PlotLosses``.

    Raises:
        ImportError: If livelossplot is not installed.

    Example:
        >>> from livelossplot.outputs import MatplotlibPlot  # doctest: +SKIP
        >>> plot = LiveLossPlot(outputs=[MatplotlibPlot(figpath='curves_{i}.png')])  # doctest: +SKIP
        >>> Trial(model, optimizer, loss, metrics=['loss'], callbacks=[plot]).run(10)  # doctest: +SKIP
    """

    def __init__(
        self,
        on_batch: bool = False,
        batch_step_size: int = 10,
        on_epoch: bool = True,
        draw_once: bool = False,
        **kwargs: Any,
    ) -> None:
        self._plot_losses = _import_plot_losses()
        self._kwargs = kwargs
        self.draw_once = draw_once
        self.batch_step_size = batch_step_size
        self.plt: Any = None
        self.batch_plt: Any = None
        self._pending_batches: list[dict] = []
        self._draw_epochs = on_epoch
        self._draw_batches = on_batch
        if on_batch:
            self.on_step_training = self._record_batch
            self.on_end_training = self._end_training
        if on_epoch:
            self.on_end_epoch = self._record_epoch

    def on_start(self, state: dict) -> None:
        """Create the epoch and batch plotters."""
        self.plt = self._plot_losses(**self._kwargs)
        self.batch_plt = self._plot_losses(**self._kwargs)
        self._pending_batches = []

    def _record_batch(self, state: dict) -> None:
        # The batch's values as they are (possibly on the device): moved to the host a group at a time.
        self._pending_batches.append(dict(state[torchbearer.METRICS]))
        if not self.draw_once and state[torchbearer.BATCH] % self.batch_step_size == 0:
            self._flush_batches()
            _send_quietly(self.batch_plt)

    def _end_training(self, state: dict) -> None:
        self._flush_batches()

    def _flush_batches(self) -> None:
        """Move the pending batch values to the host in one transfer and log them."""
        flat = {
            (index, key): value for index, batch in enumerate(self._pending_batches) for key, value in batch.items()
        }
        numbers = to_python(flat)  # the one host-device sync for all pending batches
        for index, batch in enumerate(self._pending_batches):
            self.batch_plt.update(_numbers_only({key: numbers[(index, key)] for key in batch}))
        self._pending_batches = []

    def _record_epoch(self, state: dict) -> None:
        self.plt.update(_numbers_only(to_python(state[torchbearer.METRICS])), current_step=state[torchbearer.EPOCH])
        if not self.draw_once:
            _send_quietly(self.plt)

    def on_end(self, state: dict) -> None:
        """With ``draw_once``, draw the plots now."""
        if not self.draw_once:
            return
        if self._draw_batches:
            self._flush_batches()
            _send_quietly(self.batch_plt)
        if self._draw_epochs:
            _send_quietly(self.plt)
