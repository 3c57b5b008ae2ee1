"""Replaying a Trial's history: callbacks (progress bars, loggers) driven from the stored records.

Neither the model nor the data is touched. Each recorded epoch gives a training pass and a validation
pass of the recorded number of steps (or one step each), whose batch hooks see the epoch's final
values, then ``on_end_epoch`` with the record's metric values. As in 0.5, the record's step counts
(``train_steps``, ``validation_steps``) set ``TRAIN_STEPS`` and ``VALIDATION_STEPS`` but are not
metrics: callbacks see what they saw in the run, so a replayed ``CSVLogger`` writes the run's log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torchbearer.bases import Callback
from torchbearer.callbacks.callbacks import CallbackList
from torchbearer.injection import get_printer
from torchbearer.state import (
    BATCH,
    CALLBACK_LIST,
    DATA,
    EPOCH,
    HISTORY,
    MAX_EPOCHS,
    METRICS,
    STEPS,
    STOP_TRAINING,
    TRAIN_DATA,
    TRAIN_STEPS,
    VALIDATION_DATA,
    VALIDATION_STEPS,
    State,
)

STEP_KEYS = ("train_steps", "validation_steps")  # in each history record, beside the metric values
TRAINING_HOOKS = ("on_sample", "on_forward", "on_criterion", "on_backward", "on_step_training")
VALIDATION_HOOKS = ("on_sample_validation", "on_forward_validation", "on_criterion_validation", "on_step_validation")


def replay_history(
    trial_state: Mapping, callbacks: Sequence[Callback] | None = None, verbose: int = 2, one_batch: bool = False
) -> None:
    """Drive ``callbacks`` (after a printer of verbosity ``verbose``) through the history in ``trial_state``.

    Args:
        trial_state: The Trial's state; it is copied, not changed.
        callbacks: Callbacks to replay to (the list is not modified).
        verbose: Printer verbosity for the replay (no -1 here).
        one_batch: Call the batch hooks once per pass instead of once per recorded step.
    """
    callback_list = CallbackList([get_printer(verbose, "v"), *(callbacks or [])])
    history = trial_state[HISTORY]
    state = State()
    state.update(trial_state)
    state.update({STOP_TRAINING: False, MAX_EPOCHS: len(history), CALLBACK_LIST: callback_list})
    callback_list.on_start(state)
    for epoch, record in enumerate(history):
        state[EPOCH] = epoch
        train_steps, val_steps = record.get("train_steps"), record.get("validation_steps")
        if one_batch:
            train_steps = None if train_steps is None else 1
            val_steps = None if val_steps is None else 1
        state[TRAIN_STEPS], state[VALIDATION_STEPS] = train_steps, val_steps
        metrics = {key: value for key, value in record.items() if key not in STEP_KEYS}
        callback_list.on_start_epoch(state)
        if train_steps is not None:
            _replay_pass(state, metrics, train_steps, training=True)
        if val_steps is not None and not state[STOP_TRAINING]:
            _replay_pass(state, metrics, val_steps, training=False)
        state[METRICS] = metrics
        callback_list.on_end_epoch(state)
    callback_list.on_end(state)


def _replay_pass(state: dict, metrics: dict, steps: int, training: bool) -> None:
    """One recorded pass: its start and end hooks around ``steps`` batches of batch hooks."""
    callbacks = state[CALLBACK_LIST]
    state[METRICS] = {key: value for key, value in metrics.items() if ("val_" in key) != training}
    state[STEPS] = steps
    state[DATA] = TRAIN_DATA if training else VALIDATION_DATA
    hooks = TRAINING_HOOKS if training else VALIDATION_HOOKS
    (callbacks.on_start_training if training else callbacks.on_start_validation)(state)
    for batch in range(max(steps, 0)):
        state[BATCH] = batch
        for hook in hooks:
            getattr(callbacks, hook)(state)
        if state[STOP_TRAINING]:
            break
    (callbacks.on_end_training if training else callbacks.on_end_validation)(state)
