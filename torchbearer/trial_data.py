"""The data half of the Trial's builder methods: which generators or tensors each pass reads, and how many steps.

:class:`DataBuilders` is a base class of :class:`torchbearer.Trial` (its methods act on ``self.state``);
it lives here so that ``trial.py`` holds the fitting itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader

from torchbearer import checks
from torchbearer.errors import ConfigurationError, ConfigurationTypeError
from torchbearer.loading import BatchLoader
from torchbearer.state import (
    INF_TRAIN_LOADING,
    LOADER,
    TEST_DATA,
    TEST_GENERATOR,
    TEST_STEPS,
    TRAIN_DATA,
    TRAIN_GENERATOR,
    TRAIN_STEPS,
    VALIDATION_DATA,
    VALIDATION_GENERATOR,
    VALIDATION_STEPS,
)


class _DataKeys(dict):
    """The three data sets by key; any other key (``evaluate(data_key='val')``) is a clear error."""

    def __missing__(self, key: Any) -> tuple:
        raise ConfigurationError(
            f"data_key {key!r} is not a data set: use torchbearer.TRAIN_DATA, torchbearer.VALIDATION_DATA or "
            "torchbearer.TEST_DATA"
        )


DATA_KEYS = _DataKeys({
    TRAIN_DATA: (TRAIN_GENERATOR, TRAIN_STEPS, "training"),
    VALIDATION_DATA: (VALIDATION_GENERATOR, VALIDATION_STEPS, "validation"),
    TEST_DATA: (TEST_GENERATOR, TEST_STEPS, "test"),
})  # fmt: skip
SHORT_NAMES = {"training": "train", "validation": "val", "test": "test"}  # as in with_val_data, for_val_steps


def _empty_generator_error(label: str) -> ConfigurationError:
    return ConfigurationError(
        f"the {label} generator is empty (length 0): check the dataset and that batch_size is not "
        "larger than the dataset with drop_last=True"
    )


def _tensor_loader(data_key, dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    """A ``DataLoader`` over tensors; an empty one is refused here, before a shuffling sampler fails on it."""
    if len(dataset) == 0:
        raise _empty_generator_error(DATA_KEYS[data_key][2])
    return DataLoader(dataset, batch_size, shuffle=shuffle, num_workers=num_workers)


def _int_steps(steps: Any, label: str) -> int:
    if not isinstance(steps, int):
        warnings.warn(f"Number of {label} steps is not an int, casting to int", stacklevel=3)
        try:
            steps = int(steps)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"the number of {label} steps must be an int, got {steps!r}") from error
    return steps


_Trial = TypeVar("_Trial", bound="DataBuilders")  # the Trial itself: each builder returns it for chaining


class DataBuilders:
    """``with_*_generator``, ``with_*_data``, ``for_*_steps``, ``with_inf_train_loader`` and ``with_loader``."""

    state: dict

    def _with_generator(self: _Trial, data_key, generator, steps) -> _Trial:
        generator_key, steps_key, label = DATA_KEYS[data_key]
        short = SHORT_NAMES[label]
        if isinstance(generator, torch.Tensor):
            raise ConfigurationTypeError(
                f"with_{short}_generator got a tensor; it needs a DataLoader (or another re-iterable of batches). "
                f"For tensors use with_{short}_data(x{', y' if short != 'test' else ''}, batch_size=...)"
            )
        self.state[generator_key] = generator
        if steps is None:
            steps = self.state[steps_key]
        try:
            length = len(generator)
        except TypeError as error:
            if steps is None:
                raise ConfigurationError(
                    f"the {label} generator {type(generator).__name__} has no length, so the number of steps "
                    f"per epoch is unknown: pass steps=N to with_{short}_generator or call for_{short}_steps(N)"
                ) from error
            length = None
        if length == 0:
            raise _empty_generator_error(label)
        return self._for_steps(data_key, length if steps is None else steps)

    def with_train_generator(self: _Trial, generator: Iterable[Any], steps: int | None = None) -> _Trial:
        """Train on ``generator`` (re-iterated each epoch), ``steps`` batches per epoch (default its length).

        Raises:
            ConfigurationTypeError: ``generator`` is a tensor (use :meth:`with_train_data`).
            ConfigurationError: the generator is empty, or has no length and no ``steps`` are given.
        """
        return self._with_generator(TRAIN_DATA, generator, steps)

    def with_val_generator(self: _Trial, generator: Iterable[Any], steps: int | None = None) -> _Trial:
        """Validate on ``generator`` after each training pass; also the default for ``evaluate``."""
        return self._with_generator(VALIDATION_DATA, generator, steps)

    def with_test_generator(self: _Trial, generator: Iterable[Any], steps: int | None = None) -> _Trial:
        """Use ``generator`` for ``predict``."""
        return self._with_generator(TEST_DATA, generator, steps)

    def with_generators(
        self: _Trial, train_generator: Iterable[Any] | None = None, val_generator: Iterable[Any] | None = None,
        test_generator: Iterable[Any] | None = None, train_steps: int | None = None, val_steps: int | None = None,
        test_steps: int | None = None,
    ) -> _Trial:  # fmt: skip
        """Set any of the train, validation and test generators at once."""
        if train_generator is not None:
            self.with_train_generator(train_generator, train_steps)
        if val_generator is not None:
            self.with_val_generator(val_generator, val_steps)
        if test_generator is not None:
            self.with_test_generator(test_generator, test_steps)
        return self

    def with_train_data(
        self: _Trial, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1, shuffle: bool = True, num_workers: int = 0,
        steps: int | None = None,
    ) -> _Trial:  # fmt: skip
        """Train on tensors ``x``, ``y`` through a ``DataLoader`` (in this process: tensors in memory need no workers).

        Raises:
            ConfigurationTypeError: ``x`` or ``y`` is not a tensor.
            ConfigurationError: ``x`` and ``y`` differ in length, or the loader would be empty.
        """
        dataset = checks.tensor_dataset("with_train_data", x=x, y=y)
        loader = _tensor_loader(TRAIN_DATA, dataset, batch_size, shuffle, num_workers)
        return self.with_train_generator(loader, steps=steps)

    def with_val_data(
        self: _Trial, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1, shuffle: bool = False,
        num_workers: int = 0, steps: int | None = None,
    ) -> _Trial:  # fmt: skip
        """Validate on tensors ``x``, ``y`` in order through a ``DataLoader`` (errors as in :meth:`with_train_data`)."""
        dataset = checks.tensor_dataset("with_val_data", x=x, y=y)
        loader = _tensor_loader(VALIDATION_DATA, dataset, batch_size, shuffle, num_workers)
        return self.with_val_generator(loader, steps=steps)

    def with_test_data(
        self: _Trial, x: torch.Tensor, batch_size: int = 1, num_workers: int = 0, steps: int | None = None
    ) -> _Trial:  # fmt: skip
        """Predict on tensor ``x`` (unshuffled) through a ``DataLoader`` (errors as in :meth:`with_train_data`)."""
        loader = DataLoader(checks.tensor_dataset("with_test_data", x=x), batch_size, num_workers=num_workers)
        return self.with_test_generator(loader, steps=steps)

    def with_data(
        self: _Trial, x_train: torch.Tensor | None = None, y_train: torch.Tensor | None = None,
        x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, x_test: torch.Tensor | None = None,
        batch_size: int = 1, num_workers: int = 0, train_steps: int | None = None, val_steps: int | None = None,
        test_steps: int | None = None, shuffle: bool = True,
    ) -> _Trial:  # fmt: skip
        """Set train, validation and test tensors at once; parts left ``None`` are skipped.

        ``shuffle`` applies to the training data only: validation and test data are read in order.
        """
        if x_train is not None and y_train is not None:
            self.with_train_data(x_train, y_train, batch_size, shuffle, num_workers, train_steps)
        if x_val is not None and y_val is not None:
            self.with_val_data(x_val, y_val, batch_size, False, num_workers, val_steps)
        if x_test is not None:
            self.with_test_data(x_test, batch_size, num_workers, test_steps)
        return self

    def _for_steps(self: _Trial, data_key, steps) -> _Trial:
        generator_key, steps_key, label = DATA_KEYS[data_key]
        steps = _int_steps(steps, label)
        self.state[steps_key] = steps
        self.state[data_key] = (self.state[generator_key], steps)
        return self

    def for_train_steps(self: _Trial, steps: int) -> _Trial:
        """Run ``steps`` training batches per epoch (-1: until a callback stops training)."""
        return self._for_steps(TRAIN_DATA, steps)

    def for_val_steps(self: _Trial, steps: int) -> _Trial:
        """Run ``steps`` validation batches per epoch."""
        return self._for_steps(VALIDATION_DATA, steps)

    def for_test_steps(self: _Trial, steps: int) -> _Trial:
        """Run ``steps`` batches in ``predict``."""
        return self._for_steps(TEST_DATA, steps)

    def for_steps(
        self: _Trial, train_steps: int | None = None, val_steps: int | None = None, test_steps: int | None = None
    ) -> _Trial:
        """Set any of the step counts at once."""
        if train_steps is not None:
            self.for_train_steps(train_steps)
        if val_steps is not None:
            self.for_val_steps(val_steps)
        if test_steps is not None:
            self.for_test_steps(test_steps)
        return self

    def for_inf_train_steps(self: _Trial) -> _Trial:
        """Train until a callback sets ``STOP_TRAINING``."""
        return self.for_train_steps(-1)

    def for_inf_val_steps(self: _Trial) -> _Trial:
        """Validate until a callback sets ``STOP_TRAINING``."""
        return self.for_val_steps(-1)

    def for_inf_test_steps(self: _Trial) -> _Trial:
        """Predict until a callback sets ``STOP_TRAINING``."""
        return self.for_test_steps(-1)

    def for_inf_steps(self: _Trial, train: bool = True, val: bool = True, test: bool = True) -> _Trial:
        """Make each flagged pass infinite."""
        if train:
            self.for_inf_train_steps()
        if val:
            self.for_inf_val_steps()
        if test:
            self.for_inf_test_steps()
        return self

    def with_inf_train_loader(self: _Trial) -> _Trial:
        """Keep one training iterator across epochs, restarting it only when exhausted."""
        self.state[INF_TRAIN_LOADING] = True
        return self

    def with_loader(self: _Trial, batch_loader: BatchLoader) -> _Trial:
        """Use ``batch_loader(state)`` to load every batch of every pass."""
        checks.require_callable("with_loader", batch_loader, "a function batch_loader(state)")
        self.state[LOADER] = batch_loader
        return self
