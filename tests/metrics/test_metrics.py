import pytest
import torch

import torchbearer
from torchbearer.bases import Metric
from torchbearer.metrics import (
    AdvancedMetric,
    Mean,
    MetricList,
    MetricTree,
    ToDict,
    add_default,
    get_default,
    mean,
    running_mean,
    std,
)

from .helpers import batch_state, python, run_pass


class Named(Metric):
    """Returns ``{name: value}`` every batch and at the end; records the mode calls it gets."""

    def __init__(self, name, value):
        super().__init__(name)
        self.value = value
        self.calls = []

    def process(self, *args):
        return {self.name: self.value}

    def process_final(self, *args):
        return {self.name: self.value}

    def train(self):
        self.calls.append("train")

    def eval(self, data_key=None):
        self.calls.append(("eval", data_key))

    def reset(self, state):
        self.calls.append("reset")


def test_metric_list_looks_up_strings_in_the_registry():
    metrics = MetricList(["acc", "loss"])
    assert str(metrics) == "['acc', 'loss']"


def test_metric_list_builds_a_fresh_metric_per_lookup_of_a_class():
    first, second = MetricList(["loss"]), MetricList(["loss"])
    assert first.metric_list[0] is not second.metric_list[0]


def test_metric_list_flattens_nested_lists():
    inner = MetricList(["loss", Named("a", 1)])
    assert str(MetricList([inner, "epoch"])) == "['loss', 'a', 'epoch']"


def test_metric_list_treats_a_state_key_as_a_metric_not_a_registry_name():
    key = torchbearer.state_key("metric_list_probe")
    metrics = MetricList([key])
    assert metrics.process({key: 3}) == {str(key): 3}


def test_unknown_metric_name_raises_key_error_listing_known_names():
    with pytest.raises(KeyError) as error:
        MetricList(["acuracy"])
    message = str(error.value)
    assert "metric 'acuracy' is unknown; known metrics: acc, accuracy," in message
    assert "'loss'" not in message.split("known metrics:")[0]
    assert "did you mean 'accuracy'?" in message


def test_metric_list_rejects_what_is_not_a_metric():
    with pytest.raises(TypeError, match="neither a torchbearer Metric"):
        MetricList([3])


def test_metric_list_merges_outputs_later_names_win():
    metrics = MetricList([Named("a", 1), Named("b", 2), Named("a", 3)])
    assert metrics.process({}) == {"a": 3, "b": 2}
    assert metrics.process_final({}) == {"a": 3, "b": 2}


def test_metric_list_skips_none_and_rejects_a_raw_top_level_value():
    assert MetricList([Metric("silent")]).process({}) == {}

    class Raw(Metric):
        def process(self, *args):
            return torch.ones(1)

    with pytest.raises(TypeError, match="metric 'raw' returned a Tensor from process"):
        MetricList([Raw("raw")]).process({})


def test_metric_list_processes_without_gradients():
    weight = torch.ones(2, requires_grad=True)

    class Scaled(Metric):
        def process(self, *args):
            return {self.name: weight * 2}

        process_final = process

    metrics = MetricList([Scaled("scaled")])
    assert not metrics.process({})["scaled"].requires_grad
    assert not metrics.process_final({})["scaled"].requires_grad


def test_metric_list_broadcasts_train_eval_and_reset():
    first, second = Named("a", 1), Named("b", 2)
    metrics = MetricList([first, second])
    metrics.reset({})
    metrics.eval(data_key=torchbearer.TEST_DATA)
    metrics.train()
    assert first.calls == second.calls == ["reset", ("eval", torchbearer.TEST_DATA), "train"]


def test_metric_tree_feeds_the_roots_first_value_to_children_and_hides_the_root():
    tree = MetricTree(Named("root", torch.tensor([1.0, 3.0])))
    tree.add_child(ToDict(Mean("root_mean")))
    tree.add_child(ToDict(Mean("root_mean_again")))
    per_batch, final = run_pass(tree, [{}, {}])
    assert per_batch == [{}, {}]
    assert final == {"root_mean": 2.0, "root_mean_again": 2.0}
    assert tree.name == str(tree) == "root"


def test_metric_tree_propagates_modes_and_reset_to_root_and_children():
    root, child = Named("root", 1.0), Named("child", 2.0)
    tree = MetricTree(root)
    tree.add_child(child)
    tree.reset({})
    tree.eval(data_key=torchbearer.TRAIN_DATA)
    tree.train()
    assert root.calls == child.calls == ["reset", ("eval", torchbearer.TRAIN_DATA), "train"]


def test_advanced_metric_dispatches_by_mode():
    class Modes(AdvancedMetric):
        def process_train(self, *args):
            return "train"

        def process_validate(self, *args):
            return "validate"

        def process_final_train(self, *args):
            return "final_train"

        def process_final_validate(self, *args):
            return "final_validate"

    metric = Modes("modes")
    assert (metric.process(), metric.process_final()) == ("train", "final_train")
    metric.eval()
    assert (metric.process(), metric.process_final()) == ("validate", "final_validate")
    metric.train()
    assert metric.process() == "train"


def test_advanced_metric_defaults_to_no_output():
    metric = AdvancedMetric("quiet")
    assert metric.process() is None and metric.process_final() is None


def test_add_default_instance_is_shared_and_class_is_fresh(restore_registry):
    shared = Named("shared", 1)
    add_default("scratch", shared)
    assert get_default("scratch") is shared
    add_default("scratch", Named, "made", 5)
    first, second = get_default("scratch"), get_default("scratch")
    assert first is not second and first.name == "made" and first.value == 5


def test_paper_listing_2_names_without_a_mean():
    @running_mean
    @std
    class Correct(Metric):
        def __init__(self):
            super().__init__("acc")

        def process(self, state):
            return (state[torchbearer.Y_PRED].argmax(dim=1) == state[torchbearer.Y_TRUE]).float()

    metrics = MetricList([Correct(), "loss"])
    states = [batch_state(torch.eye(3), torch.tensor([0, 1, 0]), loss=torch.tensor(1.0)) for _ in range(2)]
    per_batch, final = run_pass(metrics, states)
    assert list(per_batch[0]) == ["running_acc", "running_loss"]
    assert list(final) == ["acc_std", "running_acc", "loss", "running_loss"]
    _, final = run_pass(metrics, states, data_key=torchbearer.VALIDATION_DATA, training=False)
    assert list(final) == ["val_acc_std", "val_loss"]


SYNCING = ["item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy", "nonzero", "unique", "masked_select"]


class SyncError(AssertionError):
    pass


@pytest.fixture
def forbid_sync(monkeypatch):
    """Make every tensor operation that waits for the device raise, including boolean-mask indexing."""

    def forbidden(name):
        def raise_sync(*args, **kwargs):
            raise SyncError(f"{name} synchronises with the device")

        return raise_sync

    for name in SYNCING:
        monkeypatch.setattr(torch.Tensor, name, forbidden(f"Tensor.{name}"))
    for name in ("nonzero", "unique", "masked_select"):
        monkeypatch.setattr(torch, name, forbidden(f"torch.{name}"))
    original_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts):
            raise SyncError("boolean-mask indexing synchronises with the device")
        return original_getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)


def test_forbid_sync_fixture_catches_syncs(forbid_sync):
    values = torch.ones(3)
    for sync in (values.sum().item, values.tolist, lambda: bool(values.sum()), lambda: values[values > 0]):
        with pytest.raises(SyncError):
            sync()


def classification_states(batches=5, classes=6):
    states = []
    for index in range(batches):
        targets = torch.randint(0, classes, (7,))
        targets[index % 7] = -100
        state = batch_state(torch.randn(7, classes), targets, loss=torch.rand(()))
        state[torchbearer.CRITERION] = torch.nn.CrossEntropyLoss()
        states.append(state)
    return states


def test_built_in_metrics_never_sync_with_the_device_per_batch(forbid_sync):
    metrics = MetricList(["acc", "loss", "cat_acc", "top_5_acc", "epoch", "lr", std(mean(torchbearer.LOSS))])
    states = classification_states()
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for state in states:
        state[torchbearer.OPTIMIZER] = optimizer
    for training in (True, False):
        if training:
            metrics.train()
        else:
            metrics.eval(data_key=torchbearer.VALIDATION_DATA)
        metrics.reset(states[0])
        for state in states:
            metrics.process(state)
        final = metrics.process_final(states[-1])
    assert set(final) == {"val_acc", "val_loss", "val_top_5_acc", "val_epoch", "val_loss_std"}


def test_binary_and_regression_metrics_never_sync_with_the_device_per_batch(forbid_sync):
    metrics = MetricList(["binary_acc", "mse", "loss"])
    metrics.train()
    state = batch_state(torch.rand(8, 1), torch.randint(0, 2, (8, 1)).float(), loss=torch.rand(()))
    metrics.reset(state)
    for _ in range(3):
        metrics.process(state)
    final = metrics.process_final(state)
    assert set(final) == {"binary_acc", "mse", "loss", "running_binary_acc", "running_mse", "running_loss"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect device synchronisation")
def test_built_in_metrics_never_sync_on_cuda():
    metrics = MetricList(["acc", "loss", "top_5_acc", "epoch", std(mean(torchbearer.LOSS))])
    states = [{key: value.cuda() if isinstance(value, torch.Tensor) else value for key, value in state.items()}
              for state in classification_states()]  # fmt: skip
    metrics.train()
    metrics.reset(states[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for state in states:
            metrics.process(state)
        final = metrics.process_final(states[-1])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert python(final)["acc"] >= 0.0
