import math

import pytest
import torch

from torchbearer.bases import Metric
from torchbearer.metric_values import to_python
from torchbearer.metrics import Masked, Mean, MetricTree, RunningMean, RunningMetric, Std, ToDict, Var

from .helpers import split

SIZES = [3, 7, 1, 5]


def feed(metric, batches):
    metric.reset({})
    for batch in batches:
        metric.process(batch)
    return to_python({"value": metric.process_final()})["value"]


def test_mean_over_uneven_batches_is_the_mean_of_all_values():
    values = torch.rand(16)
    assert feed(Mean("m"), split(values, SIZES)) == pytest.approx(values.mean().item(), rel=1e-6)


def test_mean_of_scalar_losses_is_the_mean_of_the_batch_values():
    losses = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(6.0)]
    assert feed(Mean("loss"), losses) == pytest.approx(3.0)


def test_mean_accepts_python_numbers():
    assert feed(Mean("m"), [1, 2.5]) == pytest.approx(1.75)


def test_mean_over_a_dim_gives_a_vector():
    values = torch.rand(12, 3)
    result = feed(Mean("m", dim=0), split(values, [5, 7]))
    assert result == pytest.approx(values.mean(0).tolist(), rel=1e-6)


def test_mean_drops_masked_entries_from_sum_and_count():
    values = torch.tensor([1.0, float("nan"), 3.0, 10.0])
    mask = torch.tensor([True, False, True, False])
    assert feed(Mean("m"), [Masked(values, mask)]) == pytest.approx(2.0)


def test_mean_mixes_masked_and_plain_batches():
    batches = [Masked(torch.tensor([1.0, 5.0]), torch.tensor([1.0, 0.0])), torch.tensor([2.0, 3.0])]
    assert feed(Mean("m"), batches) == pytest.approx(2.0)


def test_mean_keeps_a_nan_value():
    assert math.isnan(feed(Mean("loss"), [torch.tensor(1.0), torch.tensor(float("nan"))]))


def test_mean_of_a_pass_without_values_is_none():
    mean = Mean("m")
    mean.process(torch.ones(2))
    mean.reset({})
    assert mean.process_final() is None


def test_mean_reset_starts_a_new_pass():
    mean = Mean("m")
    feed(mean, [torch.full((4,), 10.0)])
    assert feed(mean, [torch.ones(2)]) == pytest.approx(1.0)


@pytest.mark.parametrize("unbiased", [True, False])
def test_var_and_std_match_torch_over_all_values(unbiased):
    values = torch.randn(16) * 3 + 2
    batches = split(values, SIZES)
    assert feed(Var("v", unbiased=unbiased), batches) == pytest.approx(values.var(unbiased=unbiased).item(), rel=1e-5)
    assert feed(Std("s", unbiased=unbiased), batches) == pytest.approx(values.std(unbiased=unbiased).item(), rel=1e-5)


def test_var_stays_accurate_when_the_mean_dwarfs_the_spread():
    values = (10_000 + torch.randn(2000, dtype=torch.float64)).float()
    expected = values.double().var().item()
    assert feed(Var("v"), split(values, [500] * 4)) == pytest.approx(expected, rel=1e-3)


def test_var_over_a_dim_matches_torch():
    values = torch.randn(10, 3)
    result = feed(Var("v", dim=0), split(values, [4, 6]))
    assert result == pytest.approx(values.var(0).tolist(), rel=1e-5)


def test_std_ignores_masked_entries():
    values = torch.tensor([1.0, 100.0, 2.0, 3.0, -50.0])
    mask = torch.tensor([1, 0, 1, 1, 0])
    batches = [Masked(values[:2], mask[:2]), Masked(values[2:], mask[2:])]
    assert feed(Std("s"), batches) == pytest.approx(torch.tensor([1.0, 2.0, 3.0]).std().item())


def test_unbiased_var_of_one_value_is_nan_like_torch():
    assert math.isnan(feed(Var("v"), [torch.tensor([4.0])]))


def running(metric, batches):
    return [to_python({"v": metric.process(batch)})["v"] for batch in batches]


def test_running_mean_recomputes_every_step_size_calls_over_the_window():
    metric = RunningMean("r", batch_size=3, step_size=2)
    metric.train()
    metric.reset({})
    outputs = running(metric, [torch.tensor([float(v)]) for v in [1, 2, 3, 4, 5, 6]])
    # calls 0, 2, 4 recompute; the window holds the last 3 batch means
    assert outputs == pytest.approx([1.0, 1.0, 2.0, 2.0, 4.0, 4.0])


def test_running_mean_window_carries_over_between_epochs():
    metric = RunningMean("r", batch_size=4, step_size=10)
    metric.train()
    metric.reset({})
    running(metric, [torch.tensor(float(v)) for v in [1, 2, 3]])
    metric.reset({})
    # first call after reset recomputes, over last epoch's batches and this one
    assert running(metric, [torch.tensor(9.0), torch.tensor(100.0)]) == pytest.approx([3.75, 3.75])


def test_running_mean_averages_batch_means_not_samples():
    metric = RunningMean("r", batch_size=10, step_size=1)
    metric.train()
    metric.reset({})
    outputs = running(metric, [torch.tensor([0.0, 0.0, 0.0, 4.0]), torch.tensor([3.0])])
    assert outputs[-1] == pytest.approx(2.0)


def test_running_mean_skips_a_batch_with_every_sample_masked():
    metric = RunningMean("r", batch_size=10, step_size=1)
    metric.train()
    metric.reset({})
    batches = [torch.tensor([2.0]), Masked(torch.tensor([9.0, 9.0]), torch.zeros(2)), torch.tensor([4.0])]
    assert running(metric, batches) == pytest.approx([2.0, 2.0, 3.0])


def test_running_mean_reports_nothing_in_eval():
    metric = RunningMean("r")
    metric.eval()
    assert metric.process(torch.ones(3)) is None
    assert metric.process_final() is None


def test_running_mean_final_value_is_the_latest_result():
    metric = RunningMean("r", step_size=1)
    metric.train()
    metric.reset({})
    running(metric, [torch.tensor(2.0), torch.tensor(4.0)])
    assert to_python({"v": metric.process_final()})["v"] == pytest.approx(3.0)


def test_running_metric_subclass_gets_the_window_oldest_first():
    class Last(RunningMetric):
        def _process_train(self, value):
            return value

        def _step(self, window):
            return window.clone()

    metric = Last("last", batch_size=3, step_size=1)
    metric.train()
    metric.reset({})
    outputs = running(metric, [torch.tensor(float(v)) for v in range(5)])
    assert outputs[-1] == [2.0, 3.0, 4.0]


def test_running_metric_must_define_its_statistic():
    with pytest.raises(TypeError):
        RunningMetric("incomplete")


class Reads(Metric):
    """A root metric giving the value stored under its name."""

    def process(self, *args):
        return args[0][self.name]


class Echo(Metric):
    """A child metric whose output is its input, every batch."""

    def process(self, *args):
        return args[0]


class OneAtATime(Metric):
    """Wraps an aggregator but hides ``process_group``, so a tree hands it every value on its own."""

    def __init__(self, metric):
        super().__init__(metric.name)
        self.metric = metric

    def process(self, *args):
        return self.metric.process(*args)

    def process_final(self, *args):
        return self.metric.process_final(*args)

    def train(self):
        self.metric.train()

    def eval(self, data_key=None):
        self.metric.eval(data_key=data_key)

    def reset(self, state):
        self.metric.reset(state)

    def state_dict(self):
        return self.metric.state_dict()


def tree_of(children, wrap):
    tree = MetricTree(Reads("v"))
    for child in children:
        tree.add_child(ToDict(wrap(child)))
    return tree


def drive(tree, values, checkpoint_at=None):
    """Two training passes and an evaluation pass; returns every output and a mid-pass state_dict."""
    outputs, saved = [], None
    for training in (True, True, False):
        tree.train() if training else tree.eval()
        tree.reset({})
        for index, value in enumerate(values):
            outputs.append(to_python(tree.process({"v": value})))
            if index == checkpoint_at:
                saved = tree.state_dict()
        outputs.append(to_python(tree.process_final({})))
    return outputs, saved


@pytest.mark.parametrize("step_size", [1, 3, 10])
def test_a_tree_handing_values_over_in_groups_gives_every_output_of_one_at_a_time(step_size):
    values = [torch.rand(4) for _ in range(37)] + [Masked(torch.rand(4), torch.tensor([1, 0, 1, 1]))]
    children = lambda: [Mean("m"), RunningMean("r", batch_size=7, step_size=step_size), RunningMean("s", 5, 4)]  # noqa: E731
    grouped, saved = drive(tree_of(children(), lambda child: child), values, checkpoint_at=12)
    single, single_saved = drive(tree_of(children(), OneAtATime), values, checkpoint_at=12)
    assert [sorted(output) for output in grouped] == [sorted(output) for output in single]
    for output, expected in zip(grouped, single):
        assert output == pytest.approx(expected, rel=1e-6)
    for child, single_child in zip(saved["children"], single_saved["children"]):
        torch.testing.assert_close(child, single_child, rtol=1e-6, atol=1e-7)


def test_a_tree_with_a_child_that_needs_every_value_hands_each_one_over():
    tree = MetricTree(Reads("v"))
    tree.add_child(ToDict(Mean("m")))
    tree.add_child(ToDict(Echo("seen")))
    tree.train()
    tree.reset({})
    assert tree.process({"v": 2.0}) == {"seen": 2.0}
    assert tree.process({"v": 5.0}) == {"seen": 5.0}


def test_a_running_window_fed_in_blocks_keeps_the_newest_values():
    metric = RunningMean("r", batch_size=5, step_size=4)
    metric.train()
    metric.reset({})
    outputs = running(metric, [torch.tensor(float(v)) for v in range(13)])
    # recomputed at calls 0, 4, 8, 12 over the last 5 batches
    assert outputs[0] == 0.0 and outputs[4] == pytest.approx(2.0) and outputs[8] == pytest.approx(6.0)
    assert outputs[12] == pytest.approx(10.0)
    assert to_python({"w": metric.state_dict()["window"]})["w"] == [[float(v), 1.0] for v in range(8, 13)]


def test_a_smaller_last_batch_is_summed_with_its_own_kind():
    values = [torch.rand(8) for _ in range(5)] + [torch.rand(3)]
    masked = [Masked(torch.rand(4), torch.tensor([0, -100, 1, 1]) != -100), Masked(torch.rand(2), torch.ones(2))]
    expected = torch.cat(values).mean().item()
    assert feed(Mean("m"), values) == pytest.approx(expected, rel=1e-6)
    kept = torch.cat([masked[0].values[torch.tensor([0, 2, 3])], masked[1].values])
    assert feed(Mean("m"), masked) == pytest.approx(kept.mean().item(), rel=1e-6)
    window = RunningMean("r", step_size=6)
    window.train()
    assert running(window, values)[-1] == pytest.approx(values[0].mean().item(), rel=1e-6)
    assert to_python({"w": window.state_dict()["window"]})["w"][-1] == pytest.approx([values[-1].mean().item(), 1])


def test_values_that_cannot_be_stacked_are_summed_one_by_one():
    assert feed(Mean("m"), [[1.0, 2.0], [3.0]]) == pytest.approx(2.0)


def test_a_running_window_restored_on_one_device_and_fed_on_another_moves_to_the_new_one():
    saved = RunningMean("r", batch_size=4, step_size=1)
    saved.train()
    saved.reset({})
    running(saved, [torch.tensor(1.0), torch.tensor(2.0)])
    resumed = RunningMean("r", batch_size=4, step_size=1).load_state_dict(saved.state_dict())  # on the CPU
    resumed.train()
    resumed.reset({})
    output = resumed.process(torch.tensor(3.0, device="meta"))  # the next batch lives elsewhere
    assert output.device.type == "meta"
    assert resumed.state_dict()["window"].shape == (3, 2)
