"""The data of a distributed Trial: each ``DataLoader`` rebuilt over this rank's share of its data set.

Training uses a ``DistributedSampler`` whose epoch follows the Trial's. Evaluation and prediction give
each rank a contiguous block of whole batches and never pad, so no sample counts twice (for FSDP, where
every forward is a collective, each rank gets as many batches). The rebuilt loader keeps the batch size
(now per rank), shuffling, ``drop_last``, ``collate_fn``, workers and ``pin_memory``.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler, SequentialSampler

from torchbearer.distributed.process_group import get_rank, get_world_size
from torchbearer.distributed.settings import DistributedSettings
from torchbearer.errors import ConfigurationError, TorchbearerWarning
from torchbearer.state import (
    HISTORY,
    TEST_GENERATOR,
    TEST_STEPS,
    TRAIN_GENERATOR,
    TRAIN_STEPS,
    VALIDATION_GENERATOR,
    VALIDATION_STEPS,
)

_SHARDED = "_torchbearer_rank_share"
_LOADERS = (
    (TRAIN_GENERATOR, TRAIN_STEPS, "with_train_generator", True),
    (VALIDATION_GENERATOR, VALIDATION_STEPS, "with_val_generator", False),
    (TEST_GENERATOR, TEST_STEPS, "with_test_generator", False),
)


def distribute_loaders(trial: Any, settings: DistributedSettings) -> None:
    """Replace each of the Trial's DataLoaders with one over this rank's share of its data set."""
    state = trial.state
    for generator_key, steps_key, builder, training in _LOADERS:
        loader = state[generator_key]
        if loader is None or getattr(loader, _SHARDED, False):
            continue
        reason = _unshardable(loader)
        if reason is not None:
            if reason:
                warnings.warn(
                    f"{reason}, so every rank iterates all of it. Give it a DistributedSampler yourself, or use "
                    "with_distributed(False) and split the data per rank",
                    TorchbearerWarning,
                    stacklevel=4,
                )
            continue
        seed = _shared_seed(loader, settings.cpu_group)
        epochs = functools.partial(_epochs_done, trial)
        shared = shard_loader(loader, training, get_rank(), get_world_size(), seed, settings.strategy, epochs)
        steps = state[steps_key]
        if steps == _length(loader):
            steps = len(shared)
        getattr(trial, builder)(shared, steps)


def _epochs_done(trial: Any) -> int:
    return len(trial.state[HISTORY])


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def shard_loader(
    loader: DataLoader,
    training: bool,
    rank: int,
    world_size: int,
    seed: int = 0,
    strategy: str = "ddp",
    epochs: Callable[[], int] = lambda: 0,
) -> DataLoader:
    """A copy of ``loader`` over one rank's share of its data set.

    Args:
        loader: A ``DataLoader`` over a map-style data set with a sequential or random sampler.
        training: Training loaders get an :class:`EpochDistributedSampler` (every rank the same number of
            batches, the last ones padded with repeated samples); evaluation loaders an
            :class:`EvaluationSampler` (DDP) or :class:`EvenBatchSampler` (FSDP), never padded.
        rank: The rank whose share it is.
        world_size: The number of ranks.
        seed: Shuffling seed, equal on every rank.
        strategy: ``'ddp'`` or ``'fsdp'``.
        epochs: Returns the epoch about to run, for ``set_epoch``.

    Returns:
        The new loader, with the same batch size (now per rank), shuffling, ``drop_last``, ``collate_fn``,
        workers and ``pin_memory``.

    Raises:
        ConfigurationError: The loader cannot be split (its reason is given).
    """
    reason = _unshardable(loader)
    if reason is not None:
        raise ConfigurationError(f"{reason or 'the loader is already split per rank'}; it cannot be split per rank")
    shuffle = isinstance(loader.sampler, RandomSampler)
    size = len(loader.dataset)
    if training:
        sampler = EpochDistributedSampler(loader.dataset, world_size, rank, shuffle=shuffle, seed=seed, epochs=epochs)
        return _rebuild(loader, sampler=sampler)
    if strategy == "fsdp":  # every forward gathers the parameters: all ranks need as many batches
        batches = EvenBatchSampler(size, loader.batch_size, world_size, rank, shuffle, seed, loader.drop_last)
        return _rebuild(loader, batch_sampler=batches)
    sampler = EvaluationSampler(size, loader.batch_size, world_size, rank, shuffle, seed, loader.drop_last)
    return _rebuild(loader, sampler=sampler)


def _unshardable(loader: Any) -> str | None:
    """Why ``loader`` cannot be split per rank: ``''`` if it already is, a reason to warn, or None if it can."""
    if not isinstance(loader, DataLoader):
        return f"the generator {type(loader).__name__} is not a torch DataLoader"
    if isinstance(loader.sampler, (DistributedSampler, EvaluationSampler)) or isinstance(
        loader.batch_sampler, EvenBatchSampler
    ):
        return ""
    if isinstance(loader.dataset, IterableDataset):
        return "the DataLoader's dataset is an IterableDataset"
    if loader.batch_size is None:
        return "the DataLoader has a custom batch_sampler"
    if not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        return f"the DataLoader's sampler is a {type(loader.sampler).__name__}"
    return None


def _shared_seed(loader: DataLoader, group: Any) -> int:
    """Rank zero's seed (from the loader's generator, else torch's), so every rank shuffles alike."""
    generator = loader.generator
    seed = generator.initial_seed() if generator is not None else torch.initial_seed()
    value = torch.tensor([seed % (2**63)], dtype=torch.int64)
    dist.broadcast(value, src=0, group=group)
    return int(value.item())


_LOADER_ARGUMENTS = [
    name for name in inspect.signature(DataLoader.__init__).parameters
    if name not in ("self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last")
]  # fmt: skip


def _rebuild(loader: DataLoader, **sampling: Any) -> DataLoader:
    options = {name: getattr(loader, name) for name in _LOADER_ARGUMENTS if hasattr(loader, name)}
    if "batch_sampler" not in sampling:
        options.update(batch_size=loader.batch_size, drop_last=loader.drop_last)
    shared = DataLoader(loader.dataset, **options, **sampling)
    setattr(shared, _SHARDED, True)
    return shared


class EpochDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that calls ``set_epoch`` with the Trial's epoch each time it is iterated.

    Args:
        dataset: The data set.
        num_replicas: The world size.
        rank: This rank.
        shuffle: Reshuffle every epoch (the same permutation on every rank, split between them).
        seed: The shuffling seed, equal on every rank.
        epochs: Returns the number of the epoch about to run.
    """

    def __init__(
        self, dataset: Any, num_replicas: int, rank: int, shuffle: bool, seed: int, epochs: Callable[[], int]
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self._epochs = epochs

    def __iter__(self) -> Iterator[int]:
        self.set_epoch(self._epochs())
        return super().__iter__()


def _order(size: int, shuffle: bool, seed: int) -> list[int]:
    if not shuffle:
        return list(range(size))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(size, generator=generator).tolist()


def _block(count: int, world: int, rank: int) -> tuple[int, int]:
    """This rank's ``[start, stop)`` when ``count`` items are split into ``world`` contiguous blocks."""
    return rank * count // world, (rank + 1) * count // world


class EvaluationSampler(Sampler[int]):
    """This rank's share of a data set for evaluation: a contiguous block of whole batches, never padded.

    The batches are those a single process with the same batch size would make; rank 0 takes the first
    block of them, rank 1 the next, ... So every sample is seen once, per-batch values are the same as in
    one process, and predictions gathered in rank order come in data set order.

    Args:
        size: Number of samples.
        batch_size: Batch size of the loader (per rank).
        num_replicas: The world size.
        rank: This rank.
        shuffle: Permute the samples (the same permutation on every rank) before splitting.
        seed: The permutation's seed.
        drop_last: Leave out the last, incomplete batch (as the loader would).
    """

    def __init__(
        self, size: int, batch_size: int, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False,
    ) -> None:  # fmt: skip
        batches = size // batch_size if drop_last else math.ceil(size / batch_size)
        first, last = _block(batches, num_replicas, rank)
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.start, self.stop = first * batch_size, min(last * batch_size, size)

    def __iter__(self) -> Iterator[int]:
        return iter(_order(self.size, self.shuffle, self.seed)[self.start : self.stop])

    def __len__(self) -> int:
        return self.stop - self.start


class EvenBatchSampler(Sampler[list[int]]):
    """Batches for evaluating a sharded (FSDP) model: every rank gets the same number of batches, no padding.

    Each forward of a sharded model is a collective, so ranks must run equally many. Each rank takes a
    contiguous block of samples (sizes differ by at most one) in ``ceil(batches / world)`` batches of
    nearly equal size, none larger than ``batch_size``. Per-sample values are exact; per-batch averages
    such as the loss average over these batches.

    Args:
        size: Number of samples.
        batch_size: Largest batch.
        num_replicas: The world size.
        rank: This rank.
        shuffle: Permute the samples (the same permutation on every rank) before splitting.
        seed: The permutation's seed.
        drop_last: Leave out the samples of the last, incomplete single-process batch.
    """

    def __init__(
        self, size: int, batch_size: int, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False,
    ) -> None:  # fmt: skip
        kept = size // batch_size * batch_size if drop_last else size
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.start, self.stop = _block(kept, num_replicas, rank)
        self.batches = max(1, math.ceil(math.ceil(kept / batch_size) / num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        indices = _order(self.size, self.shuffle, self.seed)[self.start : self.stop]
        for batch in range(self.batches):
            first, last = _block(len(indices), self.batches, batch)
            yield indices[first:last]

    def __len__(self) -> int:
        return self.batches
