import pytest
import torch

import torchbearer
from torchbearer.bases import Metric
from torchbearer.metrics import (
    BatchLambda,
    EpochLambda,
    MetricList,
    MetricTree,
    ToDict,
    default_for_key,
    get_default,
    lambda_metric,
    mean,
    running_mean,
    std,
    to_dict,
    var,
)

from .helpers import batch_state, run_pass


def correct(y_pred, y_true):
    return (y_pred.argmax(1) == y_true).float()


def states(count=3):
    """Batches whose per-sample correctness is [1, 0] each time."""
    return [batch_state(torch.eye(2), torch.tensor([0, 0])) for _ in range(count)]


class Correct(Metric):
    """Per-sample correctness, named 'correct'."""

    def __init__(self, name="correct"):
        super().__init__(name)

    def process(self, state):
        return correct(state[torchbearer.Y_PRED], state[torchbearer.Y_TRUE])


def test_default_for_key_registers_a_class_and_returns_it_unchanged(restore_registry):
    decorated = default_for_key("scratch_a")(Correct)
    assert decorated is Correct
    built = get_default("scratch_a")
    assert isinstance(built, Correct) and built is not get_default("scratch_a")


def test_default_for_key_passes_arguments_to_the_class(restore_registry):
    default_for_key("scratch_b", "renamed")(Correct)
    assert get_default("scratch_b").name == "renamed"


def test_default_for_key_shares_an_instance_and_stacks_aliases(restore_registry):
    @default_for_key("scratch_c")
    @default_for_key("scratch_d")
    @mean
    @lambda_metric("shared")
    def shared(y_pred, y_true):
        return correct(y_pred, y_true)

    assert get_default("scratch_c") is get_default("scratch_d") is shared


def test_user_registration_replaces_the_built_in_acc(restore_registry):
    @default_for_key("acc")
    @mean
    class Mine(Correct):
        pass

    assert isinstance(MetricList(["acc"]).metric_list[0], Mine)


def test_lambda_metric_builds_batch_or_epoch_lambdas():
    assert isinstance(lambda_metric("per_batch")(correct), BatchLambda)
    epoch = lambda_metric("per_epoch", on_epoch=True)(correct)
    assert isinstance(epoch, EpochLambda) and epoch.running and epoch.step_size == 50


def test_to_dict_on_a_class_keeps_name_doc_and_arguments():
    Wrapped = to_dict(Correct)
    metric = Wrapped("renamed")
    assert isinstance(metric, ToDict) and Wrapped.__name__ == "Correct" and Wrapped.__doc__ == Correct.__doc__
    assert metric.name == "renamed"
    assert run_pass(metric, states(1))[0] == [{"renamed": [1.0, 0.0]}]


def test_to_dict_on_an_instance_wraps_it():
    metric = to_dict(Correct())
    assert isinstance(metric, ToDict) and metric.name == "correct"


@pytest.mark.parametrize("decorate", [mean, mean(), mean(dim=None)], ids=["bare", "called", "with_args"])
def test_mean_works_bare_or_called_on_a_class(decorate):
    Tree = decorate(Correct)
    assert Tree.__name__ == "Correct" and issubclass(Tree, MetricTree)
    per_batch, final = run_pass(Tree(), states())
    assert per_batch == [{}, {}, {}]
    assert final == {"correct": 0.5}


def test_statistics_on_an_instance_mutate_one_tree():
    tree = mean(Correct())
    assert std(tree) is tree
    assert var(tree) is tree
    _, final = run_pass(tree, states())
    assert final == pytest.approx({"correct": 0.5, "correct_std": torch.tensor([1.0, 0] * 3).std().item(),
                                   "correct_var": torch.tensor([1.0, 0] * 3).var().item()})  # fmt: skip


def test_std_and_var_pass_their_arguments():
    tree = var(std(Correct(), unbiased=False), unbiased=False)
    _, final = run_pass(tree, states())
    assert final == pytest.approx({"correct_std": 0.5, "correct_var": 0.25})


def test_running_mean_called_with_arguments():
    tree = running_mean(Correct(), batch_size=2, step_size=1)
    child = tree.children[0].metric
    assert (child.name, child._batch_size, child._step_size) == ("running_correct", 2, 1)


def test_spec_example_stack_gives_documented_names(restore_registry):
    @default_for_key("my")
    @running_mean(step_size=1)
    @std
    @mean
    @lambda_metric("my_metric")
    def my_metric(y_pred, y_true):
        return correct(y_pred, y_true)

    metrics = MetricList(["my"])
    per_batch, final = run_pass(metrics, states())
    assert per_batch == [{"running_my_metric": 0.5}] * 3
    assert list(final) == ["my_metric", "my_metric_std", "running_my_metric"]
    _, final = run_pass(metrics, states(), training=False)
    assert list(final) == ["val_my_metric", "val_my_metric_std"]


def test_class_decorators_reuse_the_inner_tree_in_order():
    @running_mean
    @var
    @mean
    class Stacked(Correct):
        pass

    tree = Stacked("stacked")
    assert isinstance(tree.root, Correct) and tree.root.name == "stacked"
    assert [child.name for child in tree.children] == ["stacked", "stacked_var", "running_stacked"]


def test_children_are_named_after_the_root_at_build_time():
    Tree = mean(Correct)
    assert Tree("first").children[0].name == "first"
    assert Tree("second").children[0].name == "second"


def test_decorating_a_state_key_aggregates_its_values():
    key = torchbearer.state_key("decorated_probe")
    tree = running_mean(mean(key), step_size=1)
    values = [torch.tensor(1.0), torch.tensor(3.0)]
    per_batch, final = run_pass(tree, [{key: value} for value in values])
    assert per_batch == [{"running_decorated_probe": 1.0}, {"running_decorated_probe": 2.0}]
    assert final == {"decorated_probe": 2.0, "running_decorated_probe": 2.0}
    _, final = run_pass(tree, [{key: value} for value in values], data_key=torchbearer.TEST_DATA, training=False)
    assert final == {"test_decorated_probe": 2.0}


def test_running_mean_over_a_state_key_with_dim():
    key = torchbearer.state_key("estimate_probe")
    tree = running_mean(key, dim=1, step_size=1)
    per_batch, _ = run_pass(tree, [{key: torch.tensor([[1.0, 3.0], [5.0, 7.0]])}])
    assert per_batch == [{"running_estimate_probe": [2.0, 6.0]}]
