"""``torchbearer.distributed.reduction``: metric values pooled over ranks equal the values of all the data."""

from __future__ import annotations

import pytest
import torch

import torchbearer
from torchbearer.distributed import DISTRIBUTED, CrossRank, DistributedSettings
from torchbearer.metrics import EpochLambda, Mean, Std, Var


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
