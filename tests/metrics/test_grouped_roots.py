"""Roots that compute a group of batches at once (``batch_inputs`` / ``process_batches``) give exactly the
outputs, final values and saved states of computing every batch as it comes."""

import weakref

import pytest
import torch

from torchbearer.bases import Metric
from torchbearer.errors import MetricError
from torchbearer.metric_values import to_python
from torchbearer.metrics import CategoricalAccuracy, Loss, Masked, Mean, MetricList, RunningMean
from torchbearer.metrics.masked import Batches, stack_batches
from torchbearer.state import BATCH_METRICS_UNREAD, LOSS, Y_PRED, Y_TRUE


class OneBatchAtATime(Metric):
    """Wraps a root but hides ``process_batches``, so its tree computes each batch as it comes."""

    def __init__(self, root):
        super().__init__(root.name)
        self.root = root

    def process(self, *args):
        return self.root.process(*args)


def eager(tree):
    tree.root = OneBatchAtATime(tree.root)
    return tree


def batches(sizes, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    states = []
    for size in sizes:
        y_true = torch.randint(0, classes, (size,), generator=generator)
        y_true[torch.rand(size, generator=generator) < 0.2] = -100  # some ignored samples
        states.append({
            Y_PRED: torch.randn(size, classes, generator=generator),
            Y_TRUE: y_true,
            LOSS: torch.rand((), generator=generator),
        })  # fmt: skip
    return states


def assert_same_outputs(outputs, expected):
    assert [sorted(output) for output in outputs] == [sorted(output) for output in expected]
    for output, expected_output in zip(outputs, expected):
        assert output == pytest.approx(expected_output, rel=1e-6)


def drive(metric, states, checkpoint_at):
    """Two training passes and an evaluation pass; returns every output and a mid-pass state_dict."""
    outputs, saved = [], None
    for training in (True, True, False):
        metric.train() if training else metric.eval()
        metric.reset({})
        for index, state in enumerate(states):
            outputs.append(to_python(metric.process(state)))
            if index == checkpoint_at:
                saved = metric.state_dict()
        outputs.append(to_python(metric.process_final(states[-1])))
    return outputs, saved


@pytest.mark.parametrize("make", [CategoricalAccuracy, Loss])
@pytest.mark.parametrize(
    "sizes", [[8] * 45, [8] * 44 + [3], [8] * 20 + [3] + [8] * 20 + [5, 5]]
)  # the last batch may be smaller, and so may others
@pytest.mark.parametrize("unread", [False, True], ids=["read", "unread"])  # unread: groups of 64 batches
def test_a_root_computing_groups_gives_every_output_of_one_batch_at_a_time(make, sizes, unread):
    states = [{**state, BATCH_METRICS_UNREAD: unread} for state in batches(sizes)]
    grouped, saved = drive(make(), states, checkpoint_at=23)
    single, single_saved = drive(eager(make()), states, checkpoint_at=23)
    if unread:  # only the final values are read: the per-batch ones are skipped
        grouped, single = [grouped[index] for index in _finals(sizes)], [single[index] for index in _finals(sizes)]
    assert_same_outputs(grouped, single)
    torch.testing.assert_close(saved, single_saved, rtol=1e-6, atol=1e-7)


def _finals(sizes):
    """Where ``drive``'s outputs hold each pass's final values."""
    return [(len(sizes) + 1) * pass_number + len(sizes) for pass_number in range(3)]


def test_accuracy_of_batches_whose_samples_differ_in_shape_is_computed_batch_by_batch():
    generator = torch.Generator().manual_seed(0)
    states = [
        {Y_PRED: torch.randn(4, 5, *extra, generator=generator),
         Y_TRUE: torch.randint(0, 5, (4, *extra), generator=generator)}
        for extra in [(), (), (3,), (3,), (2,)] * 3
    ]  # fmt: skip
    grouped, _ = drive(CategoricalAccuracy(), states, checkpoint_at=4)
    single, _ = drive(eager(CategoricalAccuracy()), states, checkpoint_at=4)
    assert_same_outputs(grouped, single)


def test_accuracy_over_groups_matches_the_plain_count_of_correct_kept_samples():
    states = batches([16] * 30)
    metric = MetricList([CategoricalAccuracy()])
    metric.reset({})
    for state in states:
        metric.process(state)
    correct = kept = 0
    for state in states:
        keep = state[Y_TRUE] != -100
        correct += ((state[Y_PRED].argmax(1) == state[Y_TRUE]) & keep).sum().item()
        kept += keep.sum().item()
    assert to_python(metric.process_final(states[-1]))["acc"] == pytest.approx(correct / kept)


@pytest.mark.parametrize("sizes", [[6] * 12, [6] * 5 + [2] + [6] * 5 + [4]])
def test_one_hot_targets_are_compared_as_class_indices_in_a_group(sizes):
    states = batches(sizes)
    one_hot = [{**state, Y_TRUE: torch.nn.functional.one_hot(state[Y_TRUE].clamp_min(0), 5)} for state in states]
    grouped, _ = drive(CategoricalAccuracy(), one_hot, checkpoint_at=3)
    single, _ = drive(eager(CategoricalAccuracy()), one_hot, checkpoint_at=3)
    assert_same_outputs(grouped, single)


def test_a_target_changed_in_place_before_its_group_is_computed_is_an_error():
    metric = CategoricalAccuracy()
    metric.eval()  # evaluation hands values over every 32 batches
    metric.reset({})
    buffer = torch.zeros(4, dtype=torch.long)
    for _ in range(3):
        buffer.copy_(torch.randint(0, 5, (4,)))  # a loader that refills one tensor
        metric.process({Y_PRED: torch.randn(4, 5), Y_TRUE: buffer})
    with pytest.raises(MetricError, match="target tensor of an earlier batch .* changed in place"):
        metric.process_final({})


def test_a_large_prediction_is_processed_at_once_and_not_held():
    metric = CategoricalAccuracy()
    metric.eval()
    metric.reset({})
    y_pred = torch.randn(70_000, 2)  # more elements than a metric holds for later
    held = weakref.ref(y_pred)
    metric.process({Y_PRED: y_pred, Y_TRUE: torch.zeros(70_000, dtype=torch.long)})
    expected = (y_pred.argmax(1) == 0).float().mean().item()
    del y_pred
    assert held() is None
    assert to_python(metric.process_final({}))["val_acc"] == pytest.approx(expected)


@pytest.mark.parametrize("step_size", [1, 3, 4, 10])
@pytest.mark.parametrize("group_sizes", [[1, 10, 10, 10, 7], [5, 5, 5, 5, 5, 5, 5], [13, 2, 17, 5]])
def test_a_running_mean_fed_stacked_groups_matches_one_value_at_a_time(step_size, group_sizes):
    values = [torch.rand(4) for _ in range(sum(group_sizes))]
    stacked, single = RunningMean("r", batch_size=6, step_size=step_size), RunningMean("r", 6, step_size)
    for metric in (stacked, single):
        metric.train()
        metric.reset({})
    start = 0
    for size in group_sizes:
        group = values[start : start + size]
        start += size
        last = [single.process(value) for value in group][-1]
        assert to_python({"v": stacked.process_group(stack_batches(group))}) == to_python({"v": last})
    torch.testing.assert_close(stacked.state_dict(), single.state_dict())


def test_mean_fed_stacked_masked_groups_counts_only_kept_entries():
    values = [Masked(torch.tensor([1.0, 9.0, 3.0]), torch.tensor([True, False, True])) for _ in range(4)]
    mean = Mean("m")
    mean.reset({})
    group = stack_batches(values)
    assert isinstance(group, Batches) and len(group) == 4
    mean.process_group(group)
    assert to_python({"m": mean.process_final()})["m"] == pytest.approx(2.0)
