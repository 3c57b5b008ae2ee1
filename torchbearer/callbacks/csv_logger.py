"""``CSVLogger``: one CSV row per epoch (and optionally per training batch), flushed as it is written."""

from __future__ import annotations

import csv
import os
import tempfile
from typing import Any, TextIO

import torchbearer
from torchbearer.bases import Callback
from torchbearer.callbacks.evaluation import evaluated_data, logged_epoch
from torchbearer.distributed import is_rank_zero
from torchbearer.metric_values import to_python


def _read_rows(filename: str, separator: str) -> list[list[str]]:
    """Return every row of ``filename``, or ``[]`` when the file is missing."""
    if not os.path.isfile(filename):
        return []
    with open(filename, newline="") as file:
        return list(csv.reader(file, delimiter=separator))


def _write_rows_atomically(filename: str, separator: str, rows: list[list[str]]) -> None:
    """Replace ``filename`` with ``rows`` (a temporary file moved into place: never half written)."""
    directory = os.path.dirname(os.path.abspath(filename))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".csv.tmp")
    with os.fdopen(handle, "w", newline="") as file:
        csv.writer(file, delimiter=separator).writerows(rows)
    os.replace(temporary, filename)


class CSVLogger(Callback):
    """Write the metrics to a CSV file: a row per epoch, and with ``batch_granularity`` a row per training step.

    Every row is flushed as soon as it is written, so a crash loses at most the row being written. The header
    always lists every column that appears in the file: when a row brings new columns (the validation metrics
    of the first epoch row, after the per-batch rows) the header is extended and earlier rows are padded with
    empty cells, by rewriting the file once (atomically).

    One logger keeps one log: a later ``run`` (training on), ``evaluate`` or ``predict`` of the same trial adds
    to the file instead of truncating it. A trial resumed from a checkpoint cuts the file back to the rows it
    held when the checkpoint was taken and goes on from there, so the log reads as if the run never stopped.

    An ``evaluate`` (or a ``predict`` on labelled data) adds a row at the epoch whose weights it measured, the
    last trained one (-1 before any training), with the column ``evaluation`` naming the data set (``val``,
    ``test`` or ``train``); that cell is empty on the rows of training epochs. A ``predict`` without
    targets has no values, so it adds no row.

    Args:
        filename: Path of the CSV file; missing parent directories are created.
        separator: The one-character field delimiter.
        batch_granularity: If True, also write a row (``epoch``, ``batch`` and the running metrics) after every
            training step. Reading the batch metrics moves them to the host: one sync per training step.
        write_header: If True, the first line of the file names the columns.
        append: If True, add to an existing file (keeping its header and columns) instead of starting a new
            one when this logger first starts.

    Raises:
        ValueError: If ``separator`` is not a single character.

    Example:
        >>> logger = CSVLogger('log.csv', batch_granularity=True)
        >>> Trial(model, optimizer, loss, callbacks=[logger]).with_train_data(x, y).run(3)  # doctest: +SKIP
    """

    def __init__(
        self,
        filename: str,
        separator: str = ",",
        batch_granularity: bool = False,
        write_header: bool = True,
        append: bool = False,
    ) -> None:
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger separator must be a single character such as ',' or '\\t', got {separator!r}")
        self.filename = filename
        self.separator = separator
        self.batch_granularity = batch_granularity
        self.write_header = write_header
        self.append = append
        self._file: TextIO | None = None
        self._columns: list[str] = []
        self._header_in_file = False
        self._rows_in_file = 0  # data rows, header excluded
        self._batch_row_due = False  # a training step has begun and its batch row is not written yet
        self._started = False
        self._resume_rows: int | None = None
        if batch_granularity:  # bound only here, so a logger without batch rows adds no per-batch call
            self.on_sample = self._batch_starts

    def state_dict(self) -> dict:
        """The rows the file holds once the current training step is logged.

        A checkpointer that saves during a step before this logger has written the step's row would
        otherwise record one row too few, and a run resumed from it would cut that row off.
        """
        return {"rows_in_file": self._rows_in_file + self._batch_row_due}

    def load_state_dict(self, state_dict: dict) -> CSVLogger:
        self._resume_rows = int(state_dict.get("rows_in_file", 0))
        return self

    def on_start(self, state: dict) -> None:
        if not is_rank_zero():  # in a distributed run only rank zero writes the file
            return
        directory = os.path.dirname(self.filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        mode = "a"  # a later run, evaluate or predict of the same trial continues the log
        if self._resume_rows is not None:
            self._cut_back_to(self._resume_rows)
            self._resume_rows = None
        elif not self._started:
            self._take_over(_read_rows(self.filename, self.separator) if self.append else [])
            mode = "a" if self.append else "w"
        self._started = True
        self._file = open(self.filename, mode, newline="")

    def _take_over(self, rows: list[list[str]]) -> None:
        """Continue after ``rows``, the file's content (its first row is the header if headers are written)."""
        header = rows[0] if rows and self.write_header else []
        self._columns = list(header)
        self._header_in_file = bool(header)
        self._rows_in_file = len(rows) - len(rows[:1] if header else [])

    def _cut_back_to(self, data_rows: int) -> None:
        """Drop the rows written after the checkpoint being resumed (a killed run may have logged more)."""
        rows = _read_rows(self.filename, self.separator)
        kept = rows[: data_rows + (1 if rows and self.write_header else 0)]
        if len(kept) < len(rows):
            _write_rows_atomically(self.filename, self.separator, kept)
        self._take_over(kept)

    def _batch_starts(self, state: dict) -> None:
        self._batch_row_due = True

    def on_step_training(self, state: dict) -> None:
        if self.batch_granularity:
            metrics = to_python(state[torchbearer.METRICS])  # a CPU-GPU sync point, every batch
            self._write_row({"epoch": state[torchbearer.EPOCH], "batch": state[torchbearer.BATCH], **metrics})
            self._batch_row_due = False

    def on_end_epoch(self, state: dict) -> None:
        metrics, evaluated = state[torchbearer.METRICS], evaluated_data(state)
        if evaluated is None:
            self._write_row({"epoch": state[torchbearer.EPOCH], **metrics})
        elif metrics:
            self._write_row({"epoch": logged_epoch(state), **metrics, "evaluation": evaluated})

    def on_end(self, state: dict) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write_row(self, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        new_columns = [name for name in row if name not in self._columns]
        self._columns.extend(new_columns)
        if new_columns and self._header_in_file:
            self._rewrite_with_header()
        writer = csv.DictWriter(self._file, fieldnames=self._columns, delimiter=self.separator, restval="")
        if self.write_header and not self._header_in_file:
            writer.writeheader()
            self._header_in_file = True
        writer.writerow(row)
        self._rows_in_file += 1
        self._file.flush()

    def _rewrite_with_header(self) -> None:
        """Replace the file's header with the current columns and pad every earlier row to their number."""
        self._file.close()
        rows = _read_rows(self.filename, self.separator)
        width = len(self._columns)
        padded = [row + [""] * (width - len(row)) for row in rows[1:]]
        _write_rows_atomically(self.filename, self.separator, [self._columns, *padded])
        self._file = open(self.filename, "a", newline="")
