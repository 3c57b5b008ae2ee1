"""``Trial.summary``: the model's layers, their parameters and output shapes for one batch, by ``torchinfo``.

``torchinfo`` is an optional extra (``pip install torchbearer[summary]``), imported only when a
summary is asked for. "One batch" is the input of the first batch of the Trial's data (training,
else validation, else test), loaded as a pass would load it; or the ``input_data`` / ``input_size``
given. Taking that batch and running the model leave no trace: the random state is restored (a
shuffling loader draws from it), and the forward pass runs in evaluation mode without gradients, so
batch-norm statistics and dropout draws are untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from torchbearer import rng
from torchbearer.calling import model_takes_state
from torchbearer.devices import unwrap_model
from torchbearer.errors import ConfigurationError
from torchbearer.loading import load_batch_predict
from torchbearer.state import (
    DATA_TYPE,
    DEVICE,
    ITERATOR,
    LOADER,
    MODEL,
    TEST_GENERATOR,
    TRAIN_GENERATOR,
    VALIDATION_GENERATOR,
    RunState,
    X,
)


def _import_torchinfo() -> Any:
    try:
        import torchinfo
    except ImportError as error:
        raise ImportError("Trial.summary needs torchinfo; install it with: pip install torchbearer[summary]") from error
    return torchinfo


def model_summary(trial_state: dict, input_size: Any = None, input_data: Any = None, **kwargs: Any) -> Any:
    """Summarise the Trial's model with ``torchinfo.summary`` on one batch (see :meth:`torchbearer.Trial.summary`).

    Raises:
        ImportError: torchinfo is not installed.
        ConfigurationError: the model is not an ``nn.Module``, or there is no batch to run it on.
    """
    torchinfo = _import_torchinfo()
    model = unwrap_model(trial_state[MODEL])
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(
            f"summary() needs an nn.Module model, got {type(model).__name__}: torchinfo lists the layers of a module"
        )
    if input_size is not None and "dtypes" not in kwargs:  # torchinfo would make float32 inputs
        kwargs["dtypes"] = [trial_state[DATA_TYPE]] * len(input_size)
    if input_size is None and input_data is None:
        x = first_input(trial_state)
        input_data = list(x) if isinstance(x, (list, tuple)) else [x]  # spread, as the loop calls model(*x)
    if model_takes_state(model) and "state" not in kwargs:
        kwargs["state"] = trial_state
    # An explicit device: without one, torchinfo moves a CPU model to a GPU when it sees one.
    return torchinfo.summary(model, input_size, input_data, device=trial_state[DEVICE], **kwargs)


def first_input(trial_state: dict) -> Any:
    """The model's input in the first batch of the first data set given, on the Trial's device and dtype.

    Raises:
        ConfigurationError: the Trial has no data.
    """
    for generator_key in (TRAIN_GENERATOR, VALIDATION_GENERATOR, TEST_GENERATOR):
        generator = trial_state[generator_key]
        if generator is None:
            continue
        state = RunState()
        state.update(trial_state)
        saved = rng.get_state()  # a shuffling loader draws its order (and worker seeds) from the generators
        try:
            state[ITERATOR] = iter(generator)
            (trial_state[LOADER] or load_batch_predict)(state)
        finally:
            rng.set_state(saved)
        return state[X]
    raise ConfigurationError(
        "summary() has no batch to run the model on: give the Trial data first (with_train_data, "
        "with_generators, ...), or the input's shape with its batch dimension, summary(input_size=(32, 784)), "
        "or an input, summary(input_data=[x])"
    )
