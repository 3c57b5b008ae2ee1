"""Where loggers record an ``evaluate()`` or ``predict()`` call: at the trial's epoch, marked as an evaluation.

As in 0.5, ``evaluate`` and ``predict`` run with ``state[EPOCH] = 0`` (the ``epoch`` metric, ``once_per_epoch``
and the progress bar read it). A logger that used ``EPOCH`` for them wrote an evaluation after ten epochs at
epoch 0, so a curve jumped back to the start. The Trial marks those calls' state with :data:`EVALUATION`, and
the loggers (``CSVLogger``, the TensorBoard callbacks) place their values at :func:`logged_epoch`.
"""

from __future__ import annotations

from torchbearer.state import EPOCH, HISTORY, state_key

EVALUATION = state_key("evaluation")
"""Set in the state of an ``evaluate`` or ``predict`` call: the data set's prefix (``'val'``, ``'test'`` or
``'train'``). Absent during ``run`` and ``replay``."""


def evaluated_data(state: dict) -> str | None:
    """The prefix of the data set this call evaluates, or ``None`` in a training run (or its replay)."""
    return state.get(EVALUATION)


def logged_epoch(state: dict) -> int:
    """The epoch at which a logger records this call's end-of-epoch values.

    In ``run`` and ``replay``, ``state[EPOCH]``. An evaluation is recorded at the epoch whose weights it
    measures: the last trained one, whose history record ``evaluate`` updates (``len(history) - 1``; -1 for
    a trial that has not trained yet).

    Example:
        >>> logged_epoch({EPOCH: 0, EVALUATION: 'val', HISTORY: [{}, {}, {}]})  # evaluate() after run(3)
        2
    """
    if EVALUATION not in state:
        return state[EPOCH]
    return len(state.get(HISTORY) or []) - 1
