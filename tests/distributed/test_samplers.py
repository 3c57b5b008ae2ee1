"""``torchbearer.distributed.samplers``: how each rank's share of the data is chosen and the loader rebuilt."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from torchbearer.distributed import EpochDistributedSampler, EvaluationSampler, EvenBatchSampler, shard_loader
from torchbearer.errors import ConfigurationError

SPLITS = [(13, 4, 2), (10, 3, 3), (4, 4, 3), (1, 5, 2), (100, 7, 4), (12, 4, 3)]


def _batches(indices: list[int], batch_size: int) -> list[list[int]]:
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]


@pytest.mark.parametrize("size, batch_size, world", SPLITS)
def test_evaluation_ranks_run_exactly_the_single_process_batches_once(size, batch_size, world):
    shares = [list(EvaluationSampler(size, batch_size, world, rank)) for rank in range(world)]
    per_rank_batches = [batch for share in shares for batch in _batches(share, batch_size)]
    assert per_rank_batches == _batches(list(range(size)), batch_size)
    assert [len(EvaluationSampler(size, batch_size, world, rank)) for rank in range(world)] == list(map(len, shares))


def test_evaluation_sampler_leaves_out_the_incomplete_batch_with_drop_last():
    shares = [list(EvaluationSampler(13, 4, 2, rank, drop_last=True)) for rank in range(2)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]]


def test_shuffled_evaluation_splits_one_permutation_between_the_ranks():
    shares = [list(EvaluationSampler(20, 3, 2, rank, shuffle=True, seed=7)) for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(20))
    assert shares[0] + shares[1] != list(range(20))


@pytest.mark.parametrize("size, batch_size, world", SPLITS)
def test_fsdp_evaluation_gives_every_rank_as_many_batches_in_order_without_padding(size, batch_size, world):
    samplers = [EvenBatchSampler(size, batch_size, world, rank) for rank in range(world)]
    batches = [list(sampler) for sampler in samplers]
    assert len({len(rank_batches) for rank_batches in batches}) == 1
    assert [len(sampler) for sampler in samplers] == [len(rank_batches) for rank_batches in batches]
    assert [index for rank_batches in batches for batch in rank_batches for index in batch] == list(range(size))
    assert max(len(batch) for rank_batches in batches for batch in rank_batches) <= batch_size


def test_training_sampler_sets_the_trial_epoch_and_splits_each_permutation():
    dataset = TensorDataset(torch.arange(10))
    epoch = {"value": 0}
    samplers = [EpochDistributedSampler(dataset, 2, rank, True, 3, lambda: epoch["value"]) for rank in range(2)]
    first = [list(sampler) for sampler in samplers]
    epoch["value"] = 1
    second = [list(sampler) for sampler in samplers]
    for shares in (first, second):
        assert sorted(shares[0] + shares[1]) == list(range(10))
    assert first != second
    assert samplers[0].epoch == 1


def _loader(**options) -> DataLoader:
    def collate(batch):
        return torch.utils.data.default_collate(batch)

    return DataLoader(TensorDataset(torch.arange(12.0)), batch_size=3, collate_fn=collate, **options)


def test_sharded_training_loader_keeps_batch_size_shuffle_drop_last_collate_and_workers():
    loader = _loader(shuffle=True, drop_last=True, num_workers=1, pin_memory=False)
    shared = shard_loader(loader, training=True, rank=1, world_size=2, seed=5)
    assert isinstance(shared.sampler, EpochDistributedSampler)
    assert (shared.sampler.shuffle, shared.sampler.num_replicas, shared.sampler.rank) == (True, 2, 1)
    assert (shared.batch_size, shared.drop_last, shared.num_workers) == (3, True, 1)
    assert shared.collate_fn is loader.collate_fn and shared.pin_memory is False
    assert len(shared) == 2


def test_sharded_evaluation_loaders_split_whole_batches_for_ddp_and_even_batches_for_fsdp():
    loader = _loader()
    ddp = shard_loader(loader, training=False, rank=0, world_size=3)
    fsdp = shard_loader(loader, training=False, rank=0, world_size=3, strategy="fsdp")
    assert [batch[0].tolist() for batch in ddp] == [[0.0, 1.0, 2.0]]
    assert [batch[0].tolist() for batch in fsdp] == [[0.0, 1.0], [2.0, 3.0]]


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(range(3))


@pytest.mark.parametrize("loader", [DataLoader(_Stream()), [1, 2, 3]])
def test_loaders_that_cannot_be_split_are_refused_with_the_reason(loader):
    with pytest.raises(ConfigurationError, match="IterableDataset|not a torch DataLoader"):
        shard_loader(loader, training=True, rank=0, world_size=2)
