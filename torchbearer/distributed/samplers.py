"""The data of a distributed Trial: each ``DataLoader`` rebuilt over this rank's share of its data set.

Training visits, batch for batch, the samples one process would: each epoch's order is drawn as the
loader's own sampler would draw it in one process (:class:`EpochOrder`), and each rank takes every
``world_size``-th sample of it (:class:`InterleavedSampler`), so N ranks with batch B/N train on the
batches of one process with batch B. Evaluation and prediction give each rank a contiguous block of whole
batches and never pad, so no sample counts twice (for FSDP, where every forward is a collective, each rank
gets as many batches). The rebuilt loader keeps the batch size (now per rank), shuffling, ``drop_last``,
``collate_fn``, workers, ``generator`` and ``pin_memory``.
"""

from __future__ import annotations

import collections
import copy
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
        from_rank_zero = functools.partial(_broadcast, group=settings.cpu_group)
        shared = shard_loader(loader, training, get_rank(), get_world_size(), seed, settings.strategy, from_rank_zero)
        steps = state[steps_key]
        if steps == _length(loader):
            steps = len(shared)
        getattr(trial, builder)(shared, steps)


def _broadcast(tensor: torch.Tensor, group: Any) -> torch.Tensor:
    dist.broadcast(tensor, src=0, group=group)
    return tensor


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
    from_rank_zero: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor,
) -> DataLoader:
    """A copy of ``loader`` over one rank's share of its data set.

    Args:
        loader: A ``DataLoader`` over a map-style data set with a sequential or random sampler.
        training: Training loaders get an :class:`InterleavedSampler` (the single-process order, every rank the
            same number of batches); evaluation loaders an :class:`EvaluationSampler` (DDP) or
            :class:`EvenBatchSampler` (FSDP), never padded.
        rank: The rank whose share it is.
        world_size: The number of ranks.
        seed: Seed of the evaluation loaders' shuffled order, equal on every rank.
        strategy: ``'ddp'`` or ``'fsdp'``.
        from_rank_zero: Returns rank zero's value of a CPU tensor (a broadcast on the Trial's CPU group), so
            that every rank trains in the order rank zero draws; the identity for one process.

    Returns:
        The new loader, with the same batch size (now per rank), shuffling, ``drop_last``, ``collate_fn``,
        workers and ``pin_memory``.

    Raises:
        ConfigurationError: The loader cannot be split (its reason is given).
    """
    reason = _unshardable(loader)
    if reason is not None:
        raise ConfigurationError(f"{reason or 'the loader is already split per rank'}; it cannot be split per rank")
    order = EpochOrder(loader.sampler, from_rank_zero)
    if training:
        sampler = InterleavedSampler(order, loader.batch_size, world_size, rank, loader.drop_last)
        return _rebuild(loader, sampler=sampler)
    shuffle, size = isinstance(loader.sampler, RandomSampler), len(loader.dataset)
    arguments = (size, loader.batch_size, world_size, rank, shuffle, seed, loader.drop_last, order)
    if strategy == "fsdp":  # every forward gathers the parameters: all ranks need as many batches
        return _rebuild(loader, batch_sampler=EvenBatchSampler(*arguments))
    return _rebuild(loader, sampler=EvaluationSampler(*arguments))


def _unshardable(loader: Any) -> str | None:
    """Why ``loader`` cannot be split per rank: ``''`` if it already is, a reason to warn, or None if it can."""
    if not isinstance(loader, DataLoader):
        return f"the generator {type(loader).__name__} is not a torch DataLoader"
    if isinstance(loader.sampler, (DistributedSampler, InterleavedSampler, EvaluationSampler)) or isinstance(
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
    """Rank zero's seed for shuffled evaluation (from the loader's generator, else torch's), equal on every rank."""
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


class EpochOrder:
    """The order in which one process's loader would visit its data set this epoch, the same on every rank.

    It is drawn the way the loader's own sampler draws it: a ``SequentialSampler`` goes in data set order; a
    ``RandomSampler`` seeds a new generator from one draw of the global torch generator, or draws from the
    loader's ``generator``. Every rank draws from its own generators, so it consumes as many random numbers
    as one process would (dropout and augmentations that follow stay on the single-process stream), then
    takes rank zero's draw (the seed, or the loader generator's state), so all ranks share one order: the
    one a single process seeded like rank zero would train in.

    Args:
        sampler: The loader's sampler (``RandomSampler`` or ``SequentialSampler``).
        from_rank_zero: Returns rank zero's value of a CPU tensor (a broadcast); the identity in one process.
    """

    def __init__(self, sampler: Sampler, from_rank_zero: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> None:
        self.sampler = sampler
        self.from_rank_zero = from_rank_zero

    def __len__(self) -> int:
        return len(self.sampler)

    def draw(self) -> list[int]:
        """This epoch's order, drawn as in one process and shared from rank zero (a collective when shuffled)."""
        sampler = self.sampler
        if not isinstance(sampler, RandomSampler):
            return list(range(len(sampler)))
        if sampler.generator is not None:
            sampler.generator.set_state(self.from_rank_zero(sampler.generator.get_state()))
            return list(sampler)
        seed = self.from_rank_zero(torch.tensor([_global_seed()]))
        replica = copy.copy(sampler)  # the same sampler, with the generator RandomSampler would have made
        replica.generator = torch.Generator()
        replica.generator.manual_seed(int(seed[0]))
        return list(replica)

    def consume(self) -> None:
        """Draw what one process would draw for this epoch's order, and drop it (no collective)."""
        if not isinstance(self.sampler, RandomSampler):
            return
        if self.sampler.generator is None:
            _global_seed()
        else:
            collections.deque(self.sampler, maxlen=0)


def _global_seed() -> int:
    """The seed ``RandomSampler`` draws from the global generator when the loader has none."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


class InterleavedSampler(Sampler[int]):
    """This rank's share of a training epoch: every ``num_replicas``-th sample of the single-process order.

    Rank ``r`` takes positions ``r, r + N, r + 2N, ...`` of the :class:`EpochOrder`, so the ``k``-th batches
    of all ranks (``b`` samples each) together hold exactly the ``k``-th batch of ``b * N`` samples that one
    process would train on. With ``drop_last`` the order is cut to whole global batches, as one process
    drops its incomplete batch; otherwise it is padded with samples from its start to a multiple of ``N``,
    so every rank runs as many batches (the last global batch then differs from one process's).

    Args:
        order: The epoch's order, drawn when iteration starts.
        batch_size: The batch size of one rank.
        num_replicas: The world size.
        rank: This rank.
        drop_last: Whether the loader drops its last, incomplete batch.
    """

    def __init__(self, order: EpochOrder, batch_size: int, num_replicas: int, rank: int, drop_last: bool) -> None:
        self.order, self.batch_size, self.num_replicas, self.rank = order, batch_size, num_replicas, rank
        self.drop_last = drop_last

    def _kept(self) -> int:
        """How many positions of the order the ranks share between them (all of them padded, or whole batches)."""
        size, world = len(self.order), self.num_replicas
        if self.drop_last:
            return size // (self.batch_size * world) * self.batch_size * world
        return math.ceil(size / world) * world

    def __iter__(self) -> Iterator[int]:
        order = self.order.draw()
        kept = self._kept()
        while len(order) < kept:  # pad from the start, as DistributedSampler does
            order += order[: kept - len(order)]
        return iter(order[self.rank : kept : self.num_replicas])

    def __len__(self) -> int:
        return self._kept() // self.num_replicas


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
        single_process: The order one process would draw; it is drawn and dropped each pass, so that the ranks
            consume the random numbers one process would (the metrics do not depend on the order).
    """

    def __init__(
        self, size: int, batch_size: int, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False, single_process: EpochOrder | None = None,
    ) -> None:  # fmt: skip
        batches = size // batch_size if drop_last else math.ceil(size / batch_size)
        first, last = _block(batches, num_replicas, rank)
        self.size, self.shuffle, self.seed, self.single_process = size, shuffle, seed, single_process
        self.start, self.stop = first * batch_size, min(last * batch_size, size)

    def __iter__(self) -> Iterator[int]:
        if self.single_process is not None:
            self.single_process.consume()
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
        single_process: As for :class:`EvaluationSampler`.
    """

    def __init__(
        self, size: int, batch_size: int, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False, single_process: EpochOrder | None = None,
    ) -> None:  # fmt: skip
        kept = size // batch_size * batch_size if drop_last else size
        self.size, self.shuffle, self.seed, self.single_process = size, shuffle, seed, single_process
        self.start, self.stop = _block(kept, num_replicas, rank)
        self.batches = max(1, math.ceil(math.ceil(kept / batch_size) / num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        if self.single_process is not None:
            self.single_process.consume()
        indices = _order(self.size, self.shuffle, self.seed)[self.start : self.stop]
        for batch in range(self.batches):
            first, last = _block(len(indices), self.batches, batch)
            yield indices[first:last]

    def __len__(self) -> int:
        return self.batches
