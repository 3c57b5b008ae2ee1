"""``torchbearer.distributed.samplers``: how each rank's share of the data is chosen and the loader rebuilt."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from torchbearer.distributed import EpochOrder, EvaluationSampler, EvenBatchSampler, InterleavedSampler, shard_loader
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


def _rank_batches(loader: DataLoader, world: int, seed: int, **shard_options) -> list[list[list[int]]]:
    """Each simulated rank's batches of one epoch; every rank seeded alike, as torchrun scripts are."""
    batches = []
    for rank in range(world):
        torch.manual_seed(seed)
        shared = shard_loader(loader, training=True, rank=rank, world_size=world, **shard_options)
        batches.append([batch[0].tolist() for batch in shared])
    return batches


@pytest.mark.parametrize("world, size, drop_last", [(2, 24, False), (3, 24, False), (3, 25, True), (2, 7, True)])
def test_ranks_together_train_on_the_batches_of_one_process_with_the_global_batch(world, size, drop_last):
    dataset = TensorDataset(torch.arange(size))
    torch.manual_seed(11)
    one_process = [batch[0].tolist() for batch in DataLoader(dataset, 2 * world, shuffle=True, drop_last=drop_last)]
    ranks = _rank_batches(DataLoader(dataset, batch_size=2, shuffle=True, drop_last=drop_last), world, seed=11)
    assert len({len(batches) for batches in ranks}) == 1
    together = [sorted(sum(step, [])) for step in zip(*ranks)]
    assert together == [sorted(batch) for batch in one_process]


def test_the_last_global_batch_is_padded_from_the_start_when_the_loader_keeps_it():
    ranks = _rank_batches(DataLoader(TensorDataset(torch.arange(5)), batch_size=2), world=2, seed=0)
    assert ranks == [[[0, 2], [4]], [[1, 3], [0]]]


@pytest.mark.parametrize("with_generator", [False, True])
def test_the_order_is_drawn_as_the_loaders_random_sampler_draws_it_and_consumes_as_many_numbers(with_generator):
    def loader() -> DataLoader:
        generator = torch.Generator().manual_seed(5) if with_generator else None
        return DataLoader(TensorDataset(torch.arange(10)), batch_size=10, shuffle=True, generator=generator)

    torch.manual_seed(3)
    expected, expected_next = next(iter(loader()))[0].tolist(), torch.rand(1)
    torch.manual_seed(3)
    shared = shard_loader(loader(), training=True, rank=0, world_size=1)
    assert next(iter(shared))[0].tolist() == expected
    assert torch.equal(torch.rand(1), expected_next)  # the model's random numbers stay on one process's stream


def test_every_rank_draws_its_own_numbers_but_trains_in_rank_zeros_order():
    sampler = DataLoader(TensorDataset(torch.arange(12)), shuffle=True).sampler
    shared = []  # what rank zero broadcasts: here, the values its EpochOrder drew
    torch.manual_seed(1)
    rank_zero = list(
        InterleavedSampler(EpochOrder(sampler, lambda value: shared.append(value) or value), 3, 2, 0, False)
    )
    torch.manual_seed(2)  # rank one, seeded differently
    rank_one = list(InterleavedSampler(EpochOrder(sampler, lambda value: shared[0]), 3, 2, 1, False))
    torch.manual_seed(1)
    assert [*rank_zero, *rank_one] != list(range(12))
    assert sorted(rank_zero + rank_one) == list(range(12))
    assert rank_zero == list(sampler)[0::2]


@pytest.mark.parametrize("with_generator", [False, True])
def test_shuffled_evaluation_consumes_the_random_numbers_of_one_process(with_generator):
    generator = torch.Generator().manual_seed(5) if with_generator else None
    loader = DataLoader(TensorDataset(torch.arange(13)), batch_size=4, shuffle=True, generator=generator)
    torch.manual_seed(3)
    list(loader)
    expected_state = generator.get_state() if with_generator else torch.get_rng_state()
    torch.manual_seed(3)
    if with_generator:
        generator.manual_seed(5)
    shares = [shard_loader(loader, training=False, rank=rank, world_size=2, seed=7) for rank in range(2)]
    rank_zero = [index for batch in shares[0] for index in batch[0].tolist()]
    state = generator.get_state() if with_generator else torch.get_rng_state()
    assert torch.equal(state, expected_state)
    rank_one = [index for batch in shares[1] for index in batch[0].tolist()]
    assert sorted(rank_zero + rank_one) == list(range(13))


def _loader(**options) -> DataLoader:
    def collate(batch):
        return torch.utils.data.default_collate(batch)

    return DataLoader(TensorDataset(torch.arange(12.0)), batch_size=3, collate_fn=collate, **options)


def test_sharded_training_loader_keeps_batch_size_shuffle_drop_last_collate_and_workers():
    loader = _loader(shuffle=True, drop_last=True, num_workers=1, pin_memory=False)
    shared = shard_loader(loader, training=True, rank=1, world_size=2, seed=5)
    assert isinstance(shared.sampler, InterleavedSampler)
    assert (shared.sampler.num_replicas, shared.sampler.rank) == (2, 1)
    assert isinstance(shared.sampler.order.sampler, torch.utils.data.RandomSampler)
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
