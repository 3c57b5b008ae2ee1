"""State keys and the mutable state dict that every part of a fitting loop shares.

A :class:`StateKey` is a ``str`` subclass, so a key and its text are interchangeable as dict keys
in either direction (``{MODEL: m}['model']`` and ``{'model': m}[MODEL]`` both work) and dict
lookups stay on CPython's fast string path. Keys are also metrics (they report the value stored
under them) and criteria (``key(state)`` returns that value).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from torchbearer.base_classes import Metric

__keys__: list[str] = []


def _free_name(key: str) -> str:
    """Return ``key``, or the first ``key_N`` not registered yet (``loss`` -> ``loss_1``)."""
    name, suffix = key, 0
    while name in __keys__:
        suffix += 1
        name = f"{key}_{suffix}"
    return name


def _restore_key(text: str) -> StateKey:
    """Rebuild a pickled key with its saved text, without registering or renaming it."""
    key = str.__new__(StateKey, text)
    key.key = key.name = text
    return key


class StateKey(str, Metric):
    """A collision-free key into the state dict.

    Creating a key whose text is taken appends ``_1``, ``_2``, ... so two libraries that ask for
    the same name get distinct keys.

    Args:
        key: The wanted key text.

    Example:
        >>> MU = StateKey('mu')  # doctest: +SKIP
        >>> state[MU] = encoder_mean  # doctest: +SKIP
    """

    key: str

    def __new__(cls, key: str) -> StateKey:
        text = _free_name(str(key))
        __keys__.append(text)
        instance = super().__new__(cls, text)
        instance.key = text
        instance.name = text
        return instance

    def __init__(self, key: str) -> None:  # the text was fixed in __new__
        pass

    def __str__(self) -> str:
        return self.key

    def __repr__(self) -> str:
        return self.key

    def __reduce__(self):
        return _restore_key, (self.key,)

    def __call__(self, state: Mapping) -> Any:
        """Use the key as a criterion: return the value stored under it."""
        return state[self]

    def process(self, *args: Any) -> dict[str, Any]:
        return {self.name: args[0][self]}

    def process_final(self, *args: Any) -> dict[str, Any]:
        return {self.name: args[0][self]}


def state_key(key: str) -> StateKey:
    """Make a new :class:`StateKey` (the documented way for users and callbacks to add keys)."""
    return StateKey(key)


_read = dict.__getitem__  # item access without State's string-key check: metrics read every batch
_Tensor = torch.Tensor


class _DetachedView(Mapping):
    """A read-only view of a state dict that detaches tensors as they are read (what metrics see)."""

    __slots__ = ("_state",)

    def __init__(self, state: dict) -> None:
        self._state = state

    def __getitem__(self, key: Any) -> Any:
        value = _read(self._state, key)
        return value.detach() if isinstance(value, _Tensor) and value.requires_grad else value

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def __iter__(self) -> Iterator:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def _warn_if_string(key: Any) -> None:
    if type(key) is str:
        warnings.warn(
            f"State was accessed with a string: {key}, generate keys with StateKey(str).",
            stacklevel=3,
        )


class State(dict):
    """The state dict: a ``dict`` that warns when it is indexed with a plain string."""

    def __getitem__(self, key: Any) -> Any:
        _warn_if_string(key)
        return dict.__getitem__(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        _warn_if_string(key)
        dict.__setitem__(self, key, value)

    def __contains__(self, key: object) -> bool:
        _warn_if_string(key)
        return dict.__contains__(self, key)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        added = dict(other, **kwargs)
        if kwargs or not isinstance(other, State):  # another State's keys were checked as they were set
            for key in added:
                _warn_if_string(key)
        dict.update(self, added)

    @property
    def data(self) -> Mapping:
        """A read-only view whose tensors are detached, so metrics never hold the graph."""
        return _DetachedView(self)


class RunState(State):
    """The state of one ``run``/``evaluate``/``predict`` call: a :class:`State` with ``dict``'s own item access.

    The string-access warning stays on the Trial's persistent state, where users configure; here,
    where every batch reads and writes a few dozen keys, item access runs at plain ``dict`` speed.
    """

    __getitem__ = dict.__getitem__
    __setitem__ = dict.__setitem__
    __contains__ = dict.__contains__
    update = dict.update

    @functools.cached_property
    def data(self) -> Mapping:  # a live view: built once per call, it sees every batch's values
        """A read-only view whose tensors are detached, so metrics never hold the graph."""
        return _DetachedView(self)


VERSION = state_key("torchbearer_version")
MODEL = state_key("model")
CRITERION = state_key("criterion")
OPTIMIZER = state_key("optimizer")
DEVICE = state_key("device")
DATA_TYPE = state_key("dtype")
METRIC_LIST = state_key("metric_list")
METRICS = state_key("metrics")
SELF = state_key("self")
EPOCH = state_key("epoch")
MAX_EPOCHS = state_key("max_epochs")
DATA = state_key("data")
GENERATOR = state_key("generator")
ITERATOR = state_key("iterator")
STEPS = state_key("steps")
TRAIN_GENERATOR = state_key("train_generator")
TRAIN_STEPS = state_key("train_steps")
TRAIN_DATA = state_key("train_data")
INF_TRAIN_LOADING = state_key("inf_train_loading")
VALIDATION_GENERATOR = state_key("validation_generator")
VALIDATION_STEPS = state_key("validation_steps")
VALIDATION_DATA = state_key("validation_data")
TEST_GENERATOR = state_key("test_generator")
TEST_STEPS = state_key("test_steps")
TEST_DATA = state_key("test_data")
STOP_TRAINING = state_key("stop_training")
Y_TRUE = TARGET = state_key("y_true")
Y_PRED = PREDICTION = state_key("y_pred")
X = INPUT = state_key("x")
SAMPLER = state_key("sampler")
LOADER = state_key("loader")
LOSS = state_key("loss")
FINAL_PREDICTIONS = state_key("final_predictions")
BATCH = state_key("t")
TIMINGS = state_key("timings")
CALLBACK_LIST = state_key("callback_list")
HISTORY = state_key("history")
BACKWARD_ARGS = state_key("backward_args")
MIXUP_LAMBDA = state_key("mixup_lambda")
MIXUP_PERMUTATION = state_key("mixup_permutation")

# Keys beyond 0.5: mixed precision and gradient accumulation (see torchbearer.precision), prefetching.
AUTOCAST_DTYPE = state_key("autocast_dtype")
GRAD_SCALER = state_key("grad_scaler")
ACCUMULATION_STEPS = state_key("accumulation_steps")
PREFETCH = state_key("prefetch")


def evaluation_prefix(data_key: Any) -> str:
    """The prefix of metric names evaluated on ``data_key``: ``'test'``, ``'train'``, else ``'val'``."""
    if data_key == TEST_DATA:
        return "test"
    if data_key == TRAIN_DATA:
        return "train"
    return "val"
