import pytest
import torch

import torchbearer
from torchbearer.metrics import LR, MetricList

from .helpers import run_pass


def optimizer_state(*rates):
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": rate} for rate in rates]
    return {torchbearer.OPTIMIZER: torch.optim.SGD(groups, lr=rates[0])}


def test_lr_reports_the_learning_rate_every_training_batch_and_at_the_end():
    per_batch, final = run_pass(LR(), [optimizer_state(0.1)] * 2)
    assert per_batch == [{"lr": 0.1}, {"lr": 0.1}]
    assert final == {"lr": 0.1}


def test_lr_with_several_parameter_groups_is_a_list():
    _, final = run_pass(LR(), [optimizer_state(0.1, 0.01)])
    assert final == {"lr": [0.1, 0.01]}


def test_lr_follows_changes_to_the_optimizer():
    state = optimizer_state(0.1)
    metric = LR()
    metric.train()
    state[torchbearer.OPTIMIZER].param_groups[0]["lr"] = 0.05
    assert metric.process(state) == {"lr": pytest.approx(0.05)}


@pytest.mark.parametrize("data_key", [None, torchbearer.TEST_DATA])
def test_lr_reports_nothing_in_evaluation(data_key):
    per_batch, final = run_pass(LR(), [optimizer_state(0.1)], data_key=data_key, training=False)
    assert per_batch == [None] and final is None


def test_lr_registry_key():
    assert str(MetricList(["lr"])) == "['lr']"
