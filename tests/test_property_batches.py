"""Random batch structures, shapes and dtypes thrown at a Trial: each run trains or raises one of the
library's errors with a message; none hangs and none kills the interpreter."""

from __future__ import annotations

import signal
import warnings
from contextlib import contextmanager

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.errors import TorchbearerError

SECONDS_PER_TRIAL = 5

FLOATING = [torch.float32, torch.float64, torch.float16]  # cast to the Trial's float32 when loaded
DTYPES = [*FLOATING, torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]

CRITERIA = {
    "cross_entropy": nn.CrossEntropyLoss,
    "nll": nn.NLLLoss,
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "bce_logits": nn.BCEWithLogitsLoss,
    "zero_loss": lambda: None,
}


class Hang(BaseException):
    """Raised by the alarm when a run takes too long (a BaseException, so no library code can swallow it)."""


@contextmanager
def time_limit(seconds: float):
    """Interrupt the block with :class:`Hang` after ``seconds`` (SIGALRM: main thread, POSIX only)."""

    def interrupt(signum, frame):
        raise Hang(f"the run took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor of the shape and dtype with fixed values in [-3, 3] (so every example is reproducible)."""
    count = 1
    for size in shape:
        count *= size
    values = torch.linspace(-3, 3, count).reshape(shape)
    if dtype == torch.bool:
        return values > 0
    if dtype.is_complex:
        return torch.complex(values, values)
    return values.abs().to(dtype) if not dtype.is_floating_point else values.to(dtype)


shapes = st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=3).map(tuple)
usual_shapes = st.sampled_from([(4, 4), (2, 4), (4,), (4, 1), (4, 3), (2, 3), (3, 4)])
tensors = st.builds(_tensor, st.one_of(usual_shapes, shapes), st.sampled_from(DTYPES))
leaves = st.one_of(tensors, tensors, st.none(), st.integers(-2, 2), st.text(max_size=2))
structures = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["x", "y"]), children, max_size=2),
    ),
    max_leaves=5,
)
TARGETS = {
    "index_for_1": lambda size: torch.zeros(size, dtype=torch.long),
    "index_for_3": lambda size: torch.arange(size) % 3,
    "column_index": lambda size: (torch.arange(size) % 3).view(size, 1),
    "column": lambda size: torch.linspace(0, 1, size).view(size, 1),
    "three_columns": lambda size: torch.linspace(0, 1, size * 3).view(size, 3),
    "flat": lambda size: torch.linspace(0, 1, size),
    "bool_column": lambda size: (torch.arange(size) % 2 == 0).view(size, 1),
}


@st.composite
def plausible_batches(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) as a Linear(4, k) model expects, with a target of one of several usual kinds and dtypes."""
    size = draw(st.integers(min_value=1, max_value=4))
    x = _tensor((size, 4), draw(st.sampled_from([torch.float32] * len(DTYPES) + DTYPES)))
    return x, TARGETS[draw(st.sampled_from(sorted(TARGETS)))](size)


labelled_batches = st.tuples(tensors, tensors)  # (x, y) with random shapes and dtypes
batches = st.one_of(plausible_batches(), labelled_batches, structures)
data_sets = st.one_of(st.lists(plausible_batches(), min_size=1, max_size=3), st.lists(batches, min_size=1, max_size=3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    data=data_sets,
    steps=st.integers(min_value=1, max_value=4),
    outputs=st.sampled_from([1, 3]),
    criterion_name=st.sampled_from(sorted(CRITERIA)),
    metrics=st.sampled_from([[], ["loss"], ["acc", "loss"]]),
    validate=st.booleans(),
)
def test_random_batches_train_or_raise_a_library_error(data, steps, outputs, criterion_name, metrics, validate):
    model = nn.Linear(4, outputs)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.01), CRITERIA[criterion_name](), metrics, verbose=0)
    trial.with_train_generator(data, steps=steps)
    if validate:
        trial.with_val_generator(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcast warnings, NaN losses: warnings are allowed here
        try:
            with time_limit(SECONDS_PER_TRIAL):
                history = trial.run(1)
        except TorchbearerError as error:
            assert len(str(error)) > 40, f"{type(error).__name__} with too short a message: {error}"
            return
    assert len(history) == 1
    assert history[0]["train_steps"] == steps


@settings(max_examples=80, deadline=None, derandomize=True)
@given(data=st.lists(st.one_of(structures, batches), min_size=1, max_size=3), metrics=st.sampled_from([[], ["acc"]]))
def test_random_batches_predict_or_raise_a_library_error(data, metrics):
    trial = Trial(nn.Linear(4, 2), None, nn.CrossEntropyLoss(), metrics, verbose=0).with_test_generator(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Failed to format predictions as tensor" for ragged outputs
        try:
            with time_limit(SECONDS_PER_TRIAL):
                predictions = trial.predict()
        except TorchbearerError as error:
            assert len(str(error)) > 40, f"{type(error).__name__} with too short a message: {error}"
            return
    assert isinstance(predictions, (torch.Tensor, list))


def test_the_time_limit_interrupts_a_hanging_run():
    @torchbearer.callbacks.on_sample
    def hang(state):
        while True:
            pass

    trial = Trial(nn.Linear(4, 1), verbose=0, callbacks=[hang]).for_train_steps(1)
    with pytest.raises(Hang):
        with time_limit(0.2):
            trial.run(1)
