"""TensorBoard and visdom logging: metrics, text, images, embeddings and the model graph.

The callbacks write through the shared writers of :mod:`torchbearer.callbacks.writers` (TensorBoard event files,
or a visdom server with ``visdom=True``); ``VisdomParams``, ``VisdomWriter``, ``get_writer`` and ``close_writer``
are importable from here too, as in 0.5. A TensorBoard callback keeps its writer from one call of the trial to
the next (``run``, ``evaluate``, another ``run``), flushing it at the end of each, so a trial writes one event
file per directory; :meth:`AbstractTensorBoard.close` or the end of the Python process closes it.

``evaluate`` and ``predict`` calls are logged at the epoch whose weights they measure
(:func:`torchbearer.callbacks.evaluation.logged_epoch`), not at 0.
"""

from __future__ import annotations

import copy
import html
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

import torchbearer
from torchbearer.bases import Callback
from torchbearer.callbacks.evaluation import evaluated_data, logged_epoch
from torchbearer.callbacks.writers import (  # the writer names are importable from here, as in 0.5
    VisdomParams,
    VisdomWriter,  # noqa: F401  (re-exported)
    close_writer,
    get_writer,
    require_writer_package,
)
from torchbearer.devices import unwrap_model
from torchbearer.distributed import is_fsdp_model, is_rank_zero
from torchbearer.metric_values import to_python


def _dummy_like(inputs: Any) -> Any:
    """A CPU input shaped like ``inputs`` (random for floating point, zeros otherwise) for tracing the graph."""
    if isinstance(inputs, (list, tuple)):
        return tuple(_dummy_like(part) for part in inputs)
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"the graph can be traced from tensor inputs only, got {type(inputs).__name__}")
    if inputs.is_floating_point():
        return torch.rand(inputs.shape, dtype=inputs.dtype)
    return torch.zeros(inputs.shape, dtype=inputs.dtype)


class AbstractTensorBoard(Callback):
    """Base of the TensorBoard callbacks: owns a writer for ``<log_dir>/<model class>_<comment>`` during a run.

    Args:
        log_dir: Root directory of the logs.
        comment: Suffix of the run's directory name.
        visdom: If True, send to a visdom server instead of writing TensorBoard files.
        visdom_params: A :class:`VisdomParams`; None uses the class defaults and logs to ``<dir>/log.log``.

    Raises:
        ImportError: If the package the chosen mode needs is not installed.
    """

    def __init__(
        self,
        log_dir: str = "./logs",
        comment: str = "torchbearer",
        visdom: bool = False,
        visdom_params: VisdomParams | None = None,
    ) -> None:
        require_writer_package(visdom)
        self.root_log_dir = log_dir
        self.log_dir = log_dir
        self.comment = comment
        self.visdom = visdom
        self.visdom_params = visdom_params
        self.writer: Any = None
        self.batch_writer: Any = None
        self._batch_log_dir: str | None = None

    def get_writer(
        self, log_dir: str | None = None, visdom: bool = False, visdom_params: VisdomParams | None = None
    ) -> Any:
        """Return the shared writer for ``log_dir`` (default: this callback's directory), used by this callback."""
        return get_writer(self.log_dir if log_dir is None else log_dir, self, visdom, visdom_params)

    def close_writer(self, log_dir: str | None = None) -> None:
        """Release this callback's use of the writer for ``log_dir`` (default: this callback's directory)."""
        close_writer(self.log_dir if log_dir is None else log_dir, self)

    @staticmethod
    def add_metric(add_fn: Callable[..., Any], tag: str, metric: Any, *args: Any, **kwargs: Any) -> None:
        """Log ``metric`` with ``add_fn(tag, metric, *args, **kwargs)``.

        When ``add_fn`` cannot take a list, tuple or dict whole, each element is logged under ``<tag>_<index>``
        or ``<tag>_<key>``. Any other failure becomes a warning, so logging never stops training.

        Example:
            >>> AbstractTensorBoard.add_metric(writer.add_scalar, 'epoch/acc', [0.5, 0.75], 3)  # doctest: +SKIP
            # logs epoch/acc_0 = 0.5 and epoch/acc_1 = 0.75 at step 3
        """
        try:
            add_fn(tag, metric, *args, **kwargs)
        except Exception as error:
            if isinstance(metric, (list, tuple)):
                for index, element in enumerate(metric):
                    AbstractTensorBoard.add_metric(add_fn, f"{tag}_{index}", element, *args, **kwargs)
            elif isinstance(metric, Mapping):
                for key, element in metric.items():
                    AbstractTensorBoard.add_metric(add_fn, f"{tag}_{key}", element, *args, **kwargs)
            else:
                warnings.warn(
                    f"Failed to log metric to tensorboard with error: {error!r} (tag {tag!r}, value {metric!r})",
                    stacklevel=2,
                )

    def on_start(self, state: dict) -> None:
        # Joined from the root each time, so a second run logs to the same directory instead of a nested one.
        model_name = type(unwrap_model(state[torchbearer.MODEL])).__name__  # the same under DDP as in one process
        log_dir = os.path.join(self.root_log_dir, f"{model_name}_{self.comment}")
        if self.writer is not None and log_dir == self.log_dir:
            return  # the writer of this trial's earlier calls: their events and these go to one file
        self.close()
        self.log_dir = log_dir
        self.writer = self.get_writer(visdom=self.visdom, visdom_params=self.visdom_params)

    def on_end(self, state: dict) -> None:
        """Write out what this call logged; a TensorBoard writer stays open for the trial's next call."""
        self._close_batch_writer()
        if self.visdom:
            self.close()
        elif self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Release this callback's writers (the last user of a writer closes it).

        TensorBoard writers stay open between the calls of a trial so that it writes one event file; call
        this when done with the callback to close the file before Python exits (which also closes it). A
        later call of the trial then opens a new event file.
        """
        self._close_batch_writer()
        if self.writer is not None:
            self.close_writer()
            self.writer = None

    def _open_batch_writer(self, log_dir: str, visdom_params: VisdomParams | None) -> None:
        """Make ``batch_writer`` the writer for ``log_dir`` (kept if it already is)."""
        if log_dir == self._batch_log_dir:
            return
        self._close_batch_writer()
        self._batch_log_dir = log_dir
        self.batch_writer = self.get_writer(log_dir, visdom=self.visdom, visdom_params=visdom_params)

    def _end_epoch_batch_writer(self) -> None:
        """Close the epoch's TensorBoard batch writer; a visdom one stays until ``on_end``, so its plots go on."""
        if not self.visdom:
            self._close_batch_writer()

    def _close_batch_writer(self) -> None:
        if self._batch_log_dir is not None:
            self.close_writer(self._batch_log_dir)
            self._batch_log_dir = None
            self.batch_writer = None


class TensorBoard(AbstractTensorBoard):
    """Log the model graph and the metrics (per epoch, optionally per batch) to TensorBoard or visdom.

    Epoch metrics are scalars ``epoch/<name>`` at step ``EPOCH`` (an ``evaluate`` at the last trained epoch,
    see :func:`~torchbearer.callbacks.evaluation.logged_epoch`). Batch metrics go to a writer per epoch in
    ``<log dir>/epoch-<EPOCH>`` as ``batch/<name>`` at step ``BATCH``, every ``batch_step_size`` training and
    validation steps (reading them moves them to the host: one sync per logged step). In visdom mode the plots
    are titled ``epoch-<name>`` and ``batch-<name>``, with batch steps counted across epochs.

    Args:
        log_dir: Root directory of the logs.
        write_graph: If True, trace the model (a CPU copy, on a random input shaped like the first batch) and
            write its graph. TensorBoard only.
        write_batch_metrics: If True, write the running metrics every ``batch_step_size`` steps.
        batch_step_size: Batches between two batch-metric writes.
        write_epoch_metrics: If True, write the final metrics of every epoch.
        comment: Suffix of the run's directory name (``<model class>_<comment>``).
        visdom: If True, send to a visdom server.
        visdom_params: The server's :class:`VisdomParams`.

    Example:
        >>> callback = TensorBoard('./logs', write_batch_metrics=True, batch_step_size=5)
        >>> trial = Trial(model, optimizer, loss, metrics=['acc'], callbacks=[callback])  # doctest: +SKIP
        >>> trial.with_train_data(x, y).run(3)  # then: tensorboard --logdir ./logs  # doctest: +SKIP
    """

    def __init__(
        self,
        log_dir: str = "./logs",
        write_graph: bool = True,
        write_batch_metrics: bool = False,
        batch_step_size: int = 10,
        write_epoch_metrics: bool = True,
        comment: str = "torchbearer",
        visdom: bool = False,
        visdom_params: VisdomParams | None = None,
    ) -> None:
        super().__init__(log_dir, comment, visdom, visdom_params)
        self.write_graph = write_graph
        self.write_batch_metrics = write_batch_metrics
        self.batch_step_size = batch_step_size
        self.write_epoch_metrics = write_epoch_metrics
        self._graph_written = False

    def on_sample(self, state: dict) -> None:
        if self.write_graph and not self.visdom and not self._graph_written and torchbearer.X in state:
            self._graph_written = True
            model = unwrap_model(state[torchbearer.MODEL])
            if is_rank_zero() and not is_fsdp_model(model):  # tracing a sharded model would need every rank
                self._write_graph(model, state[torchbearer.X])

    def _write_graph(self, model: torch.nn.Module, inputs: Any) -> None:
        # A CPU copy is traced so that tracing cannot touch the real model's buffers (batch norm statistics).
        try:
            with warnings.catch_warnings():  # add_graph's use of the deprecated jit tracer is not the user's to fix
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
                self.writer.add_graph(copy.deepcopy(model).to("cpu"), _dummy_like(inputs))
        except Exception as error:
            warnings.warn(
                f"TensorBoard could not write the graph of {type(model).__name__}: {error!r}. "
                "Pass write_graph=False to skip it.",
                stacklevel=3,
            )

    def on_start_epoch(self, state: dict) -> None:
        if self.write_batch_metrics:
            name = "epoch" if self.visdom else f"epoch-{logged_epoch(state)}"
            self._open_batch_writer(os.path.join(self.log_dir, name), self.visdom_params)

    def on_step_training(self, state: dict) -> None:
        self._write_batch_metrics(state)

    def on_step_validation(self, state: dict) -> None:
        self._write_batch_metrics(state)

    def _write_batch_metrics(self, state: dict) -> None:
        if not self.write_batch_metrics or state[torchbearer.BATCH] % self.batch_step_size != 0:
            return
        step = state[torchbearer.BATCH]
        if self.visdom:
            step += state[torchbearer.EPOCH] * (state.get(torchbearer.TRAIN_STEPS) or 0)
        # Moving the batch's values to the host is a CPU-GPU sync point, every batch_step_size batches.
        for name, value in to_python(state[torchbearer.METRICS]).items():
            self._add_scalar(self.batch_writer, "batch", name, value, step)

    def on_end_epoch(self, state: dict) -> None:
        if self.write_epoch_metrics:
            epoch = logged_epoch(state)
            for name, value in state[torchbearer.METRICS].items():
                self._add_scalar(self.writer, "epoch", name, value, epoch)
        self._end_epoch_batch_writer()

    def _add_scalar(self, writer: Any, group: str, name: str, value: Any, step: int) -> None:
        if self.visdom:
            self.add_metric(writer.add_scalar, name, value, step, main_tag=group)
        else:
            self.add_metric(writer.add_scalar, f"{group}/{name}", value, step)


def _split_top_level(text: str, separator: str, maxsplit: int = -1) -> list[str]:
    """Split ``text`` at ``separator`` where it is outside brackets and quotes (``str`` of a dict's items)."""
    parts: list[str] = []
    depth, quote, start, index = 0, "", 0, 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(separator, index) and len(parts) != maxsplit:
            parts.append(text[start:index])
            start = index = index + len(separator)
            continue
        index += 1
    parts.append(text[start:])
    return parts


class TensorBoardText(AbstractTensorBoard):
    """Log the trial summary and the metrics as text (HTML tables) to TensorBoard or visdom.

    Args:
        log_dir: Root directory of the logs.
        write_epoch_metrics: If True, write a table of the final metrics every epoch (tag ``epoch``).
        write_batch_metrics: If True, write a table of the running metrics every ``batch_step_size`` training
            steps (tag ``batch``, in ``<log dir>/epoch-<EPOCH>``; in visdom, in the env ``<ENV>-batch``).
            Reading them moves them to the host: one sync per logged step.
        log_trial_summary: If True, write ``str(trial)`` once (tag ``trial``).
        batch_step_size: Training batches between two batch tables.
        comment: Suffix of the run's directory name.
        visdom: If True, send to a visdom server.
        visdom_params: The server's :class:`VisdomParams`.
    """

    def __init__(
        self,
        log_dir: str = "./logs",
        write_epoch_metrics: bool = True,
        write_batch_metrics: bool = False,
        log_trial_summary: bool = True,
        batch_step_size: int = 100,
        comment: str = "torchbearer",
        visdom: bool = False,
        visdom_params: VisdomParams | None = None,
    ) -> None:
        super().__init__(log_dir, comment, visdom, visdom_params)
        self.write_epoch_metrics = write_epoch_metrics
        self.write_batch_metrics = write_batch_metrics
        self.log_trial_summary = log_trial_summary
        self.batch_step_size = batch_step_size
        self._summary_written = False

    @staticmethod
    def table_formatter(string: str) -> str:
        """Turn the text of a metrics dict (``str({'loss': 0.5})``) into an HTML table of Metric / Value rows.

        Example:
            >>> TensorBoardText.table_formatter("{'loss': 0.5}")
            '<table><tr><th>Metric</th><th>Value</th></tr><tr><td>loss</td><td>0.5</td></tr></table>'
        """
        body = string.strip()
        if body.startswith("{") and body.endswith("}"):
            body = body[1:-1]
        rows = []
        for entry in _split_top_level(body, ", ") if body.strip() else []:
            key, *value = _split_top_level(entry, ": ", maxsplit=1)
            cells = (html.escape(key.strip().strip("'\"")), html.escape(value[0].strip() if value else ""))
            rows.append("<tr><td>{}</td><td>{}</td></tr>".format(*cells))
        return "<table><tr><th>Metric</th><th>Value</th></tr>" + "".join(rows) + "</table>"

    def _metrics_table(self, state: dict) -> str:
        # Moving the values to the host is a CPU-GPU sync point (on logged batch steps).
        return self.table_formatter(str(to_python(state[torchbearer.METRICS])))

    def on_start(self, state: dict) -> None:
        super().on_start(state)
        if self.log_trial_summary and not self._summary_written and torchbearer.SELF in state:
            self._summary_written = True
            summary = str(state[torchbearer.SELF])
            if self.visdom:
                self.writer.add_text("trial", f"<pre>{html.escape(summary)}</pre>", 1)
            else:
                self.writer.add_text("trial", summary.replace("\n", "\n \n"), 1)

    def on_start_epoch(self, state: dict) -> None:
        if self.write_batch_metrics:
            if self.visdom:
                self._open_batch_writer(os.path.join(self.log_dir, "batch"), self._batch_visdom_params())
            else:
                self._open_batch_writer(os.path.join(self.log_dir, f"epoch-{logged_epoch(state)}"), None)

    def _batch_visdom_params(self) -> VisdomParams:
        """The visdom params of batch text: those of this callback with the env ``<ENV>-batch``."""
        params = copy.copy(self.visdom_params) if self.visdom_params is not None else VisdomParams()
        if self.visdom_params is None:
            os.makedirs(os.path.join(self.log_dir, "batch"), exist_ok=True)
            params.LOG_TO_FILENAME = os.path.join(self.log_dir, "batch", "log.log")
        params.ENV = f"{params.ENV}-batch"
        return params

    def on_step_training(self, state: dict) -> None:
        batch = state[torchbearer.BATCH]
        if not self.write_batch_metrics or batch % self.batch_step_size != 0:
            return
        if self.visdom:
            heading = f"<h3>Epoch {state[torchbearer.EPOCH]} - Batch {batch}</h3>"
            self.batch_writer.add_text("batch", heading + self._metrics_table(state), 1)
        else:
            self.batch_writer.add_text("batch", self._metrics_table(state), batch)

    def on_end_epoch(self, state: dict) -> None:
        if self.write_epoch_metrics:
            epoch = logged_epoch(state)
            if self.visdom:
                self.writer.add_text("epoch", f"<h4>Epoch {epoch}</h4>" + self._metrics_table(state), 1)
            else:
                self.writer.add_text("epoch", self._metrics_table(state), epoch)
        self._end_epoch_batch_writer()


def _make_grid() -> Callable[..., torch.Tensor]:
    try:
        from torchvision.utils import make_grid
    except ImportError:
        raise ImportError(
            "image logging needs torchvision; install it with: pip install torchbearer[imaging]"
        ) from None
    return make_grid


def _as_image_batch(images: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` becomes ``[B, 1, H, W]``; other shapes are returned as they are."""
    return images.unsqueeze(1) if images.dim() == 3 else images


class TensorBoardImages(AbstractTensorBoard):
    """Write a grid of the first ``num_images`` images of ``state[key]`` seen in validation, once per epoch.

    The images are copied to the host as they are collected (a sync on each validation step until
    ``num_images`` are gathered). If a validation pass has fewer images, the grid holds those it has.

    Args:
        log_dir: Root directory of the logs.
        comment: Suffix of the run's directory name.
        name: The image's tag (visdom: followed by the epoch number).
        key: State key of the images, ``[B, C, H, W]`` or ``[B, H, W]``.
        write_each_epoch: If True, write a grid every epoch; else only once.
        num_images: Images in the grid.
        nrow: Images per row of the grid (as in ``torchvision.utils.make_grid``).
        padding: Pixels between images (as in ``make_grid``).
        normalize: Shift and scale the images to [0, 1] (as in ``make_grid``).
        norm_range: ``(min, max)`` used by ``normalize`` (``make_grid``'s ``value_range``).
        scale_each: Normalise each image separately (as in ``make_grid``).
        pad_value: Value of the padding pixels (as in ``make_grid``).
        visdom: If True, send to a visdom server.
        visdom_params: The server's :class:`VisdomParams`.

    Example:
        >>> TensorBoardImages(name='Reconstructions', key=torchbearer.Y_PRED, num_images=8, nrow=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        log_dir: str = "./logs",
        comment: str = "torchbearer",
        name: str = "Image",
        key: str = torchbearer.Y_PRED,
        write_each_epoch: bool = True,
        num_images: int = 16,
        nrow: int = 8,
        padding: int = 2,
        normalize: bool = False,
        norm_range: tuple[float, float] | None = None,
        scale_each: bool = False,
        pad_value: float = 0,
        visdom: bool = False,
        visdom_params: VisdomParams | None = None,
    ) -> None:
        super().__init__(log_dir, comment, visdom, visdom_params)
        _make_grid()
        self.name = name
        self.key = key
        self.write_each_epoch = write_each_epoch
        self.num_images = num_images
        self.grid_args = {
            "nrow": nrow,
            "padding": padding,
            "normalize": normalize,
            "value_range": norm_range,
            "scale_each": scale_each,
            "pad_value": pad_value,
        }
        self._images: list[torch.Tensor] = []
        self._collected = 0
        self._done = False

    def on_start(self, state: dict) -> None:
        super().on_start(state)
        self._images, self._collected = [], 0

    def on_step_validation(self, state: dict) -> None:
        if self._done:
            return
        images = _as_image_batch(state[self.key].detach())[: self.num_images - self._collected]
        self._images.append(images.cpu())  # a sync, on each validation step until num_images are collected
        self._collected += images.shape[0]
        if self._collected >= self.num_images:
            self._write(state)

    def on_end_validation(self, state: dict) -> None:
        if not self._done and self._images:
            self._write(state)

    def _write(self, state: dict) -> None:
        grid = _make_grid()(torch.cat(self._images), **self.grid_args)
        epoch = logged_epoch(state)
        self.writer.add_image(f"{self.name}{epoch}" if self.visdom else self.name, grid, epoch)
        self._images, self._collected = [], 0
        self._done = True

    def on_end_epoch(self, state: dict) -> None:
        if self.write_each_epoch:
            self._done = False


class TensorBoardProjector(AbstractTensorBoard):
    """Write embeddings of the first ``num_images`` validation samples for TensorBoard's projector.

    Every epoch the model's features (``state[features_key]``, flattened) are written with tag ``features`` at
    step ``EPOCH``; in epoch 0 the (average-pooled) inputs are also written with tag ``data`` at step -1. The
    labels ``Y_TRUE`` are the metadata and the pooled inputs the thumbnails. The samples are copied to the
    host as they are collected (a sync on each validation step until ``num_images`` are gathered).

    An ``evaluate()`` writes its features with tag ``features_val`` (``features_test``, ...) at the last
    trained epoch, next to that epoch's own, and the ``data`` embedding only for a trial not trained yet.

    Args:
        log_dir: Root directory of the logs.
        comment: Suffix of the run's directory name.
        num_images: Samples per embedding.
        avg_pool_size: Kernel of the average pooling applied to image inputs.
        avg_data_channels: If True, the ``data`` embedding averages the input channels.
        write_data: If True, write the ``data`` embedding (epoch 0).
        write_features: If True, write the ``features`` embedding (every epoch).
        features_key: State key of the features.
    """

    def __init__(
        self,
        log_dir: str = "./logs",
        comment: str = "torchbearer",
        num_images: int = 100,
        avg_pool_size: int = 1,
        avg_data_channels: bool = True,
        write_data: bool = True,
        write_features: bool = True,
        features_key: str = torchbearer.Y_PRED,
    ) -> None:
        super().__init__(log_dir, comment)
        self.num_images = num_images
        self.avg_pool_size = avg_pool_size
        self.avg_data_channels = avg_data_channels
        self.write_data = write_data
        self.write_features = write_features
        self.features_key = features_key
        self._samples: dict[str, list[torch.Tensor]] = {}
        self._collected = 0
        self._active = False

    def on_start_validation(self, state: dict) -> None:
        self._active = self._writes_data(state) or self.write_features
        self._samples = {"inputs": [], "labels": [], "features": []}
        self._collected = 0

    def on_step_validation(self, state: dict) -> None:
        if not self._active:
            return
        take = self.num_images - self._collected
        inputs = _as_image_batch(state[torchbearer.X].detach()[:take])
        if inputs.dim() == 4:
            inputs = torch.nn.functional.avg_pool2d(inputs, self.avg_pool_size)
        features = state[self.features_key].detach()[:take]
        # Copies to the host: a sync on each validation step until num_images samples are collected.
        self._samples["inputs"].append(inputs.cpu())
        self._samples["labels"].append(state[torchbearer.Y_TRUE].detach()[:take].cpu())
        self._samples["features"].append(features.reshape(features.shape[0], -1).cpu())
        self._collected += inputs.shape[0]
        if self._collected >= self.num_images:
            self._write(state)

    def on_end_validation(self, state: dict) -> None:
        if self._active and self._collected > 0:
            self._write(state)

    def _write(self, state: dict) -> None:
        inputs = torch.cat(self._samples["inputs"])
        labels = torch.cat(self._samples["labels"]).tolist()
        thumbnails = inputs if inputs.dim() == 4 else None
        if self._writes_data(state):
            data = inputs.mean(dim=1) if self.avg_data_channels and inputs.dim() == 4 else inputs
            data = data.reshape(data.shape[0], -1)
            self.writer.add_embedding(data, metadata=labels, label_img=thumbnails, tag="data", global_step=-1)
        if self.write_features:
            features = torch.cat(self._samples["features"])
            evaluated = evaluated_data(state)
            tag = "features" if evaluated is None else f"features_{evaluated}"
            self.writer.add_embedding(
                features, metadata=labels, label_img=thumbnails, tag=tag, global_step=logged_epoch(state)
            )
        self._active = False

    def _writes_data(self, state: dict) -> bool:
        """The ``data`` embedding is written in a run's epoch 0, or by an evaluation of a trial not trained yet."""
        first = logged_epoch(state) == (0 if evaluated_data(state) is None else -1)
        return self.write_data and first
