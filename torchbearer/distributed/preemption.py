"""Preemption: on SIGTERM a training Trial finishes its batch, writes a checkpoint and exits.

Clusters send SIGTERM some time before they kill a job (SLURM at the time limit or on preemption, with
``--signal`` earlier; Kubernetes when it evicts a pod; ``torchrun`` forwards it to every worker). With
``Trial.with_preemption(path)`` the Trial catches the signal while ``run`` trains:

1. the handler only notes it; the batch in progress finishes;
2. after the batch, the ranks agree whether any of them got the signal: the flag rides on the one-number
   all-reduce that already agrees on ``STOP_TRAINING`` after every batch, so every rank stops at the
   same step and no collective is left waiting;
3. every rank writes the Trial's state dict to ``path`` (:func:`save_checkpoint`: through rank zero, or
   each rank its shards for sharded FSDP), a checkpoint that resumes bit-identically from the next batch;
4. :class:`Preempted` is raised: uncaught, the process exits with :data:`PREEMPTED_EXIT_CODE` (143,
   128 + SIGTERM, the status a process ended by SIGTERM reports), after callbacks got their ``on_end``.

A signal that arrives during validation is acted on at the end of that epoch, after its record is in
the history (a checkpoint between the training pass and the record would not resume exactly). Outside
``run`` the previous handlers are in place; a signal the Trial noted but did not act on (training ended
first) is passed on to them when ``run`` returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from torchbearer.distributed.checkpoints import save_checkpoint
from torchbearer.distributed.process_group import is_rank_zero
from torchbearer.distributed.settings import PREEMPTION
from torchbearer.errors import ConfigurationError, TorchbearerWarning
from torchbearer.state import SELF

PREEMPTED_EXIT_CODE = 143
"""Exit status after a preemption checkpoint: 128 + SIGTERM, as for a process that SIGTERM ended."""


class Preempted(SystemExit):
    """Raised by ``Trial.run`` once the preemption checkpoint is written; uncaught, it exits the process.

    Attributes:
        code: The exit status (:data:`PREEMPTED_EXIT_CODE` unless ``with_preemption`` chose another).
        path: The checkpoint written.
        progress: Where training stopped, as in the checkpoint: ``{'epoch': e, 'batch': b}`` after batch ``b``
            of epoch ``e``, or ``batch`` -1 when ``epoch`` epochs are complete.
    """

    def __init__(self, code: int, path: str, progress: dict) -> None:
        super().__init__(code)
        self.path, self.progress = path, progress


class Preemption:
    """A Trial's preemption settings and the signal it noted (``Trial.with_preemption``).

    Args:
        path: Where the checkpoint is written (a file; a folder for sharded FSDP checkpoints).
        signals: The signals that ask the Trial to stop.
        exit_code: The status :class:`Preempted` exits with.
    """

    def __init__(self, path: str, signals: Sequence[int], exit_code: int) -> None:
        self.path, self.signals, self.exit_code = os.fspath(path), tuple(signals), exit_code
        self.received: int | None = None
        self._resumable: Callable[[], bool] | None = None
        self._previous: dict[int, Any] = {}

    @property
    def armed(self) -> bool:
        """True while a run trains with the handlers installed."""
        return self._resumable is not None

    def _note(self, signal_number: int, frame: Any) -> None:
        # Only a flag: the handler may interrupt anything, even a write to stderr (a progress bar's).
        if self.received is None:
            self.received = signal_number

    def arm(self, resumable: Callable[[], bool]) -> None:
        """Install the handlers; ``resumable()`` says whether a checkpoint written now resumes exactly."""
        self.received, self._resumable = None, resumable
        self._previous = {number: signal.signal(number, self._note) for number in self.signals}

    def disarm(self, pass_on: bool) -> None:
        """Restore the previous handlers; with ``pass_on``, deliver to them a signal noted but not acted on."""
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: installed outside Python
        received, self.received, self._resumable, self._previous = self.received, None, None, {}
        if pass_on and received is not None:
            signal.raise_signal(received)

    def act_if_resumable(self, state: Mapping) -> None:
        """Every rank saw the agreed signal: write the checkpoint and raise :class:`Preempted` (a collective).

        Does nothing where a checkpoint would not resume exactly (between a training pass and the epoch's
        record); the next agreement acts instead.
        """
        if self._resumable is None or not self._resumable():
            return
        folder = os.path.dirname(self.path)
        if folder and is_rank_zero():
            os.makedirs(folder, exist_ok=True)
        content = state[SELF].state_dict()
        save_checkpoint(content, self.path, state, blocking=True)
        progress = dict(content["progress"])
        if is_rank_zero():
            name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
            where = f"epoch {progress['epoch']}, " + (f"batch {progress['batch']}" if progress["batch"] >= 0 else "end")
            print(f"torchbearer: {name}: checkpoint {self.path!r} written at {where}; exiting", file=sys.stderr)
        raise Preempted(self.exit_code, self.path, progress)


def configure(state: dict, path: str | None, signals: Sequence[int], exit_code: int) -> Preemption | None:
    """Store the Trial's preemption settings (what ``Trial.with_preemption`` calls); ``path=None`` removes them.

    Raises:
        ConfigurationError: No signals, or an exit code outside 0-255.
    """
    if path is None:
        state.pop(PREEMPTION, None)
        return None
    if not signals:
        raise ConfigurationError("with_preemption needs at least one signal to act on, e.g. signal.SIGTERM")
    if not 0 <= exit_code <= 255:
        raise ConfigurationError(f"the preemption exit code must be between 0 and 255, got {exit_code!r}")
    preemption = state[PREEMPTION] = Preemption(path, signals, exit_code)
    return preemption


@contextlib.contextmanager
def handle_preemption(state: Mapping, resumable: Callable[[], bool]) -> Iterator[None]:
    """Around ``run``: catch the preemption signals of a Trial that asked for it (:class:`Preemption`).

    Args:
        state: The run's state.
        resumable: Says whether a checkpoint written at this moment resumes exactly.
    """
    preemption = state.get(PREEMPTION)
    if preemption is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        warnings.warn(
            "with_preemption: signal handlers can only be installed in the main thread, so this run is not "
            "checkpointed on SIGTERM; call run() from the main thread",
            TorchbearerWarning,
            stacklevel=4,
        )
        yield
        return
    preemption.arm(resumable)
    try:
        yield
    except BaseException:
        preemption.disarm(pass_on=False)
        raise
    preemption.disarm(pass_on=True)
