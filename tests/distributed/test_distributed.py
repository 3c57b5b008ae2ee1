"""``torchbearer.distributed`` without launching processes: how data is split, how values are pooled, settings."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import torchbearer
from torchbearer import distributed
from torchbearer.distributed import (
    DISTRIBUTED,
    PER_RANK_KEY,
    CrossRank,
    DistributedSettings,
    EpochDistributedSampler,
    EvaluationSampler,
    EvenBatchSampler,
    configure,
    own_state,
    shard_loader,
)
from torchbearer.errors import ConfigurationError
from torchbearer.metrics import EpochLambda, Mean, Std, Var

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


def _distributed_state() -> dict:
    return {DISTRIBUTED: DistributedSettings(active=True)}


def _as_rank_zero_with(monkeypatch, metric_factory, own_values, other_values):
    """Run a metric on "rank 1" (recording what it would send), then on "rank 0" receiving it."""
    sent = {}

    def record(self, value):
        sent["value"] = value
        return [value]

    monkeypatch.setattr(CrossRank, "gather", record)
    other = metric_factory()
    other.reset(_distributed_state())
    for value in other_values:
        other.process(value)
    other.process_final()
    monkeypatch.setattr(CrossRank, "gather", lambda self, value: [value, sent["value"]])
    own = metric_factory()
    own.reset(_distributed_state())
    for value in own_values:
        own.process(value)
    return own.process_final()


@pytest.mark.parametrize("metric, reference", [(Mean, torch.mean), (Var, torch.var), (Std, torch.std)])
def test_aggregates_pooled_over_ranks_equal_the_statistic_of_all_values(monkeypatch, metric, reference):
    values = torch.randn(30, generator=torch.Generator().manual_seed(0)) * 3 + 1000
    own, other = values[:13].split(5), values[13:].split(4)
    pooled = _as_rank_zero_with(monkeypatch, lambda: metric("m"), own, other)
    torch.testing.assert_close(pooled, reference(values), rtol=1e-5, atol=0)


@pytest.mark.parametrize("metric", [Mean, Var])
def test_a_rank_without_values_does_not_change_the_pooled_value(monkeypatch, metric):
    values = torch.tensor([1.0, 2.0, 4.0])
    pooled = _as_rank_zero_with(monkeypatch, lambda: metric("m"), [values], [])
    torch.testing.assert_close(pooled, _alone(metric, values))


def _alone(metric, values: torch.Tensor) -> torch.Tensor:
    single = metric("m")
    single.process(values)
    return single.process_final()


def test_epoch_lambda_sees_every_rank_s_predictions_in_rank_order(monkeypatch):
    seen = []

    def record(y_pred, y_true):
        seen.append(y_pred.tolist())
        return y_pred.sum()

    def batch(values):
        return {torchbearer.Y_PRED: torch.tensor(values), torchbearer.Y_TRUE: torch.tensor(values)}

    def factory():
        metric = EpochLambda("f", record, running=False)
        metric.eval()
        return metric

    total = _as_rank_zero_with(monkeypatch, factory, [batch([1.0, 2.0])], [batch([3.0]), batch([4.0])])
    assert seen[-1] == [1.0, 2.0, 3.0, 4.0] and total.item() == 10.0


def test_each_rank_restores_its_own_state_and_other_ranks_keep_theirs(monkeypatch):
    per_rank = {PER_RANK_KEY: [{"rank": 0}, {"rank": 1}], "rng": {"rank": 0}}
    assert own_state(per_rank, {"rank": 0}) == {"rank": 0}
    assert own_state({"rng": {"single": True}}, {"single": True}) == {"single": True}
    monkeypatch.setattr(distributed, "get_rank", lambda: 1)
    assert own_state(per_rank, {"rank": 0}) == {"rank": 1}
    assert own_state({"rng": {"single": True}}, {"single": True}) is None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strategy": "zero"}, "strategy 'zero' is unknown"),
        ({"state_dict_type": "partial"}, "state_dict_type 'partial' is unknown"),
        ({"timeout": 0}, "positive number of seconds"),
    ],
)
def test_unusable_settings_are_refused_with_what_to_use_instead(options, message):
    with pytest.raises(ConfigurationError, match=message):
        configure({}, **options)


def test_settings_cannot_change_once_the_trial_runs_distributed():
    state = {DISTRIBUTED: DistributedSettings(active=True)}
    with pytest.raises(ConfigurationError, match="before the first run"):
        configure(state, strategy="fsdp")


def test_a_single_process_trial_is_left_exactly_as_it_was(classification_data):
    x, y = classification_data
    model = torch.nn.Linear(4, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = torchbearer.Trial(model, optimizer, torch.nn.CrossEntropyLoss(), verbose=0)
    trial.with_distributed(strategy="fsdp").with_generators(loader, loader, loader).run(1)
    assert trial.state[torchbearer.MODEL] is model
    assert trial.state[torchbearer.TRAIN_GENERATOR] is loader and trial.state[torchbearer.TEST_GENERATOR] is loader
    assert not trial.state[DISTRIBUTED].active
    assert PER_RANK_KEY not in trial.state_dict()
    assert distributed.is_rank_zero() and distributed.get_world_size() == 1
