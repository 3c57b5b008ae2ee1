import pytest
import torch

import torchbearer
from torchbearer.bases import Metric
from torchbearer.metrics import BatchLambda, EpochLambda, Mean, ToDict

from .helpers import batch_state, python, run_pass


class Constant(Metric):
    """Reports a fixed value per batch and another at the end; records mode calls."""

    def __init__(self, value=1.0, final=2.0):
        super().__init__("const")
        self.value, self.final = value, final
        self.calls = []

    def process(self, *args):
        return self.value

    def process_final(self, *args):
        return self.final

    def eval(self, data_key=None):
        self.calls.append(("eval", data_key))

    def train(self):
        self.calls.append(("train",))

    def reset(self, state):
        self.calls.append(("reset",))


def test_to_dict_names_the_value_in_training():
    metric = ToDict(Constant())
    assert metric.process({}) == {"const": 1.0}
    assert metric.process_final({}) == {"const": 2.0}


@pytest.mark.parametrize(
    ("data_key", "name"),
    [
        (None, "val_const"),
        (torchbearer.VALIDATION_DATA, "val_const"),
        (torchbearer.TEST_DATA, "test_const"),
        (torchbearer.TRAIN_DATA, "train_const"),
        ("test_data", "test_const"),
    ],
)
def test_to_dict_prefixes_by_the_data_being_evaluated(data_key, name):
    metric = ToDict(Constant())
    metric.eval(data_key=data_key)
    assert metric.process_final({}) == {name: 2.0}
    assert metric.eval_flag == name.split("_")[0]


def test_to_dict_drops_none():
    metric = ToDict(Constant(value=None, final=None))
    assert metric.process({}) is None
    assert metric.process_final({}) is None


def test_to_dict_back_in_training_drops_the_prefix():
    metric = ToDict(Constant())
    metric.eval(data_key=torchbearer.TEST_DATA)
    metric.train()
    assert metric.process({}) == {"const": 1.0}


def test_to_dict_forwards_mode_and_reset():
    inner = Constant()
    metric = ToDict(inner)
    metric.eval(data_key=torchbearer.TEST_DATA)
    metric.train()
    metric.reset({})
    assert inner.calls == [("eval", torchbearer.TEST_DATA), ("train",), ("reset",)]


def test_to_dict_of_a_mean_reports_the_pass_mean():
    metric = ToDict(Mean("m"))
    metric.eval()
    metric.reset({})
    assert metric.process(torch.tensor([1.0, 2.0])) is None
    assert python(metric.process_final()) == {"val_m": 1.5}


def test_batch_lambda_applies_the_function_to_predictions_and_targets():
    metric = BatchLambda("diff", lambda y_pred, y_true: y_pred - y_true)
    state = batch_state(torch.tensor([3.0]), torch.tensor([1.0]))
    assert metric.process(state).tolist() == [2.0]
    assert metric.process_final(state) is None


def total(y_pred, y_true):
    return (y_pred.sum() + y_true.sum()).item()


def epoch_states(batches):
    return [batch_state(torch.full((size,), float(i)), torch.zeros(size)) for i, size in enumerate(batches)]


def test_epoch_lambda_runs_on_every_step_size_batches_and_at_the_end():
    metric = EpochLambda("total", total, step_size=2)
    per_batch, final = run_pass(metric, epoch_states([1, 2, 3, 4, 5]))
    # batch i holds `size` copies of i; recomputed at batches 0, 2, 4
    assert per_batch == [0.0, 0.0, 8.0, 8.0, 40.0]
    assert final == 40.0


def test_epoch_lambda_sees_all_batches_concatenated_in_order():
    seen = []
    metric = EpochLambda("seen", lambda y_pred, y_true: seen.append(y_pred.tolist()), running=False)
    run_pass(metric, epoch_states([1, 2]))
    assert seen == [[0.0, 1.0, 1.0]]


def test_epoch_lambda_not_running_reports_only_at_the_end():
    metric = EpochLambda("total", total, running=False)
    per_batch, final = run_pass(metric, epoch_states([2, 2]))
    assert per_batch == [None, None]
    assert final == 2.0


def test_epoch_lambda_in_eval_reports_only_at_the_end():
    metric = EpochLambda("total", total)
    per_batch, final = run_pass(metric, epoch_states([2, 2]), training=False)
    assert per_batch == [None, None]
    assert final == 2.0


def test_epoch_lambda_reset_forgets_the_previous_pass():
    metric = EpochLambda("total", total)
    run_pass(metric, epoch_states([3, 3]))
    _, final = run_pass(metric, [batch_state(torch.ones(1), torch.zeros(1))])
    assert final == 1.0
