"""Splitting data into training and validation sets: tensors, or any dataset by index."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch.utils.data import Dataset, TensorDataset


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}; e.g. 0.1 keeps 10% for validation")


def train_valid_splitter(
    x: torch.Tensor, y: torch.Tensor, split: float, shuffle: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split paired tensors into training and validation parts.

    The first ``floor(len(x) * split)`` samples (after shuffling, if asked) become validation.

    Args:
        x: Inputs, samples along dim 0.
        y: Targets, samples along dim 0, as many as ``x``.
        split: Fraction of the samples to use for validation.
        shuffle: Reorder ``x`` and ``y`` by one shared ``torch.randperm`` first (seed it with
            ``torch.manual_seed`` for a repeatable split).

    Returns:
        ``(x_train, y_train, x_val, y_val)``.

    Raises:
        ValueError: If ``x`` and ``y`` differ in length or ``split`` is not in ``[0, 1]``.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of samples, got {len(x)} and {len(y)}")
    _check_fraction("split", split)
    if shuffle:
        permutation = torch.randperm(len(x))
        x, y = x[permutation], y[permutation]
    num_valid = math.floor(len(x) * split)
    return x[num_valid:], y[num_valid:], x[:num_valid], y[:num_valid]


def get_train_valid_sets(
    x: torch.Tensor,
    y: torch.Tensor,
    validation_data: Optional[tuple[torch.Tensor, torch.Tensor]],
    validation_split: Optional[float],
    shuffle: bool = True,
) -> tuple[TensorDataset, Optional[TensorDataset]]:
    """Build training and validation ``TensorDataset``s from tensors.

    Args:
        x: Training inputs.
        y: Training targets.
        validation_data: A pair ``(x_val, y_val)`` used as the validation set as is, or ``None``.
        validation_split: Without ``validation_data``, a float fraction of ``x``/``y`` to split off
            for validation (see :func:`train_valid_splitter`); anything else means no validation.
        shuffle: Shuffle before splitting.

    Returns:
        ``(trainset, valset)``; ``valset`` is ``None`` when there is no validation data.
    """
    if validation_data is not None:
        x_val, y_val = validation_data
        return TensorDataset(x, y), TensorDataset(x_val, y_val)
    if isinstance(validation_split, float):
        x, y, x_val, y_val = train_valid_splitter(x, y, validation_split, shuffle=shuffle)
        return TensorDataset(x, y), TensorDataset(x_val, y_val)
    return TensorDataset(x, y), None


class SubsetDataset(Dataset):
    """The items of ``dataset`` at the given indices, in that order.

    Args:
        dataset: Any indexable dataset.
        ids: Indices into ``dataset``; item ``i`` of the subset is ``dataset[ids[i]]``.
    """

    def __init__(self, dataset: Any, ids: Sequence[int]) -> None:
        self.dataset = dataset
        self.ids = ids

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.ids[index]]

    def __len__(self) -> int:
        return len(self.ids)


class DatasetValidationSplitter:
    """Split a dataset's indices once into training and validation ids.

    The ids ``0 .. dataset_len - 1`` are shuffled and the first ``floor(dataset_len * split_fraction)``
    become validation. With a ``shuffle_seed`` the shuffle uses a private ``random.Random(seed)``,
    so the split is repeatable and the global ``random`` state is left alone (torchbearer 0.5
    reseeded the global generator instead, so the ids chosen for a given seed differ from 0.5's).
    Without a seed the global ``random`` generator shuffles, so ``random.seed`` controls it.

    Args:
        dataset_len: Number of items in the dataset.
        split_fraction: Fraction of the items to use for validation.
        shuffle_seed: Seed for a repeatable split.

    Raises:
        ValueError: If ``split_fraction`` is not in ``[0, 1]``.

    Example:
        >>> splitter = DatasetValidationSplitter(len(dataset), 0.1, shuffle_seed=0)
        >>> trainset, valset = splitter.get_train_dataset(dataset), splitter.get_val_dataset(dataset)
    """

    def __init__(self, dataset_len: int, split_fraction: float, shuffle_seed: Optional[int] = None) -> None:
        _check_fraction("split_fraction", split_fraction)
        self.dataset_len = dataset_len
        self.split_fraction = split_fraction
        ids = list(range(dataset_len))
        shuffle = random.shuffle if shuffle_seed is None else random.Random(shuffle_seed).shuffle
        shuffle(ids)
        num_valid = math.floor(dataset_len * split_fraction)
        self.valid_ids = ids[:num_valid]
        self.train_ids = ids[num_valid:]

    def get_train_dataset(self, dataset: Any) -> SubsetDataset:
        """The training part of ``dataset``."""
        return SubsetDataset(dataset, self.train_ids)

    def get_val_dataset(self, dataset: Any) -> SubsetDataset:
        """The validation part of ``dataset``."""
        return SubsetDataset(dataset, self.valid_ids)
