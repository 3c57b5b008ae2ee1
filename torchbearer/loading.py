"""Batch loaders: functions of the state that fetch the next batch into ``X`` and ``Y_TRUE``."""

from __future__ import annotations

from collections.abc import Callable

from torchbearer import prefetch
from torchbearer.devices import deep_to
from torchbearer.errors import BatchError
from torchbearer.state import DATA_TYPE, DEVICE, GENERATOR, ITERATOR, Y_TRUE, X

BatchLoader = Callable[[dict], None]


def _next_batch(state: dict):
    return deep_to(next(state[ITERATOR]), state[DEVICE], state[DATA_TYPE])


def load_batch_standard(state: dict) -> None:
    """Load a labelled batch: the loader must yield pairs ``(x, y)``.

    Raises:
        BatchError: the batch is not a pair.
    """
    batch = next(state[ITERATOR])
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        size = f"{len(batch)} items" if isinstance(batch, (list, tuple)) else "a single object"
        raise BatchError(
            f"a training or validation batch must be a pair (x, y) but the loader gave a {type(batch).__name__} "
            f"with {size}. Make the dataset return (input, target); for unlabelled data use predict(), or write "
            "your own batch loader and pass it to with_loader()"
        )
    device, dtype = state[DEVICE], state[DATA_TYPE]
    state[X] = deep_to(batch[0], device, dtype)
    state[Y_TRUE] = deep_to(batch[1], device, dtype)


def load_batch_predict(state: dict) -> None:
    """Load a batch for prediction: ``(x, y)``, ``(x,)`` or a bare ``x`` (then no ``Y_TRUE``).

    Raises:
        BatchError: the batch is an empty list or tuple.
    """
    batch = _next_batch(state)
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise BatchError(
                f"a prediction batch must be x, (x,) or (x, y) but the loader gave an empty {type(batch).__name__}. "
                "Make the dataset return the input (and optionally the target)"
            )
        if len(batch) == 2:
            state[X], state[Y_TRUE] = batch
        else:
            state[X] = batch[0]
    else:
        state[X] = batch


def load_batch_none(state: dict) -> None:
    """No data for this pass: ``X`` and ``Y_TRUE`` are ``None`` (differentiable programming)."""
    state[X], state[Y_TRUE] = None, None


def load_batch_infinite(loader: BatchLoader) -> BatchLoader:
    """Wrap ``loader`` so that an exhausted iterator is restarted from the generator.

    Raises:
        BatchError: the generator gives no batch even right after a restart (empty, or a one-shot iterator).
    """

    def call(state: dict) -> None:
        try:
            loader(state)
        except StopIteration:
            prefetch.restart(state)
            try:
                loader(state)
            except StopIteration:
                raise _exhausted_error(state[GENERATOR]) from None

    return call


def _exhausted_error(generator: object) -> BatchError:
    return BatchError(
        f"the {type(generator).__name__} gave no batch even after restarting it: it is empty, or it is a one-shot "
        "iterator (such as a Python generator) that cannot be iterated again. Pass a re-iterable such as a "
        "DataLoader or a list of batches, or fewer steps"
    )
