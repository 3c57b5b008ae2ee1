"""When nothing can read a pass's per-batch metric values, the metric trees compute them less often
(``BATCH_METRICS_UNREAD``); what the pass reports at its end, and the history, are unchanged."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial, callbacks
from torchbearer.bases import Callback, Metric
from torchbearer.callbacks import on_end_epoch, on_end_training, on_forward_validation, on_start_epoch, on_step_training
from torchbearer.metrics import MetricTree

TRAINING_BATCHES, VALIDATION_BATCHES = 150, 70  # more than the 64 batches an unread tree holds


def make_trial(callbacks=(), metrics=("acc", "loss"), model=None, verbose=0):
    torch.manual_seed(0)
    x, y = torch.randn(TRAINING_BATCHES * 4, 6), torch.randint(0, 3, (TRAINING_BATCHES * 4,))
    model = model or nn.Linear(6, 3)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), metrics=list(metrics),
                  callbacks=list(callbacks), verbose=verbose)  # fmt: skip
    train = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    val = DataLoader(TensorDataset(x[: VALIDATION_BATCHES * 4], y[: VALIDATION_BATCHES * 4]), batch_size=4)
    return trial.with_generators(train, val)


class RecordUnread(Callback):
    """Records ``BATCH_METRICS_UNREAD`` of each pass, from end-of-pass hooks only (which leave it set)."""

    def __init__(self):
        self.unread = []

    def on_end_training(self, state):
        self.unread.append(("training", state[torchbearer.BATCH_METRICS_UNREAD]))

    def on_end_validation(self, state):
        self.unread.append(("validation", state[torchbearer.BATCH_METRICS_UNREAD]))


def test_a_pass_that_nothing_reads_reports_what_a_read_pass_reports():
    record = RecordUnread()
    unread = make_trial([record]).run(3)
    read = make_trial([on_step_training(lambda state: None), on_forward_validation(lambda state: None)]).run(3)
    assert record.unread == [("training", True), ("validation", True)] * 3
    for unread_epoch, read_epoch in zip(unread, read):
        assert list(unread_epoch) == list(read_epoch)
        # the running means exactly; the means up to float32 rounding, their sums being grouped differently
        assert unread_epoch == pytest.approx(read_epoch, rel=1e-6)
        assert unread_epoch["running_acc"] == read_epoch["running_acc"]
        assert unread_epoch["running_loss"] == read_epoch["running_loss"]


class CountGroups(Metric):
    """A root that computes groups of batches (as the built-in accuracy does) and counts them."""

    def __init__(self):
        super().__init__("group_loss")
        self.groups = 0

    def process(self, *args):
        return args[0][torchbearer.LOSS]

    def batch_inputs(self, *args):
        return args[0][torchbearer.LOSS]

    def process_batches(self, inputs):
        self.groups += 1
        return list(inputs)


def counted_tree():
    root = CountGroups()
    tree = MetricTree(root)
    tree.add_child(torchbearer.metrics.ToDict(torchbearer.metrics.Mean("group_loss")))
    tree.add_child(torchbearer.metrics.ToDict(torchbearer.metrics.RunningMean("running_group_loss")))
    return root, tree


def test_an_unread_pass_computes_its_groups_every_64_batches_instead_of_every_10():
    root, tree = counted_tree()
    make_trial(metrics=[tree]).run(1)
    unread_groups = root.groups
    root, tree = counted_tree()
    make_trial([on_step_training(lambda state: None)], metrics=[tree]).run(1)
    # training: batch 0, then 64 at a time (and the rest at the end); validation: batch 0, 64, the rest
    assert unread_groups == 4 + 3
    assert root.groups >= TRAINING_BATCHES // 10  # read, the running mean needs every refresh


class LastCount(Metric):
    """A grouped child whose per-batch output (the values seen so far) has no final value of its own."""

    takes_groups = True

    def __init__(self):
        super().__init__("seen")
        self.reset({})

    def process_group(self, values):
        self.seen += len(values)
        return {"seen": torch.tensor(self.seen)}

    def values_until_output(self):
        return 1

    def process_final(self, *args):
        return None

    def reset(self, state):
        self.seen = 0


class LossRoot(Metric):
    def __init__(self):
        super().__init__("loss_root")

    def process(self, *args):
        return args[0][torchbearer.LOSS]


def test_the_end_of_an_unread_pass_sees_the_latest_per_batch_values():
    def seen_tree():
        tree = MetricTree(LossRoot())
        tree.add_child(LastCount())
        return tree

    seen = []
    end_of_training = on_end_training(lambda state: seen.append(state[torchbearer.METRICS]["seen"]))
    make_trial([end_of_training], metrics=[seen_tree()]).run(1)
    make_trial([end_of_training, on_step_training(lambda state: None)], metrics=[seen_tree()]).run(1)
    assert seen == [TRAINING_BATCHES, TRAINING_BATCHES]


class TakesState(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x, state):
        return self.linear(x)


@pytest.mark.parametrize(
    "configure, expected",
    [
        (lambda trial: trial, [("training", True), ("validation", True)]),
        (lambda trial: trial.with_loader(lambda state: torchbearer.loading.load_batch_standard(state)),
         [("training", False), ("validation", False)]),
        (lambda trial: trial.with_closure(trial.closure), [("training", True), ("validation", True)]),
    ],
    ids=["standard", "custom batch loader", "standard closure given again"],
)  # fmt: skip
def test_a_custom_batch_loader_may_read_the_values(configure, expected):
    record = RecordUnread()
    configure(make_trial([record])).run(1)
    assert record.unread == expected


def test_a_model_that_takes_the_state_or_a_progress_bar_may_read_the_values():
    record = RecordUnread()
    make_trial([record], model=TakesState()).run(1)
    assert record.unread == [("training", False), ("validation", False)]
    record = RecordUnread()
    make_trial([record], verbose=1).run(1)
    assert record.unread == [("training", False), ("validation", False)]


def test_epoch_level_callbacks_leave_the_values_unread():
    record = RecordUnread()
    make_trial([record, on_end_epoch(lambda state: None), on_start_epoch(lambda state: None)]).run(1)
    assert record.unread == [("training", True), ("validation", True)]


def built_in_callbacks(folder, per_batch):
    """Built-in callbacks with batch hooks that read the per-batch metric values only when set to act per batch."""
    return [
        callbacks.EarlyStopping(monitor="running_loss", patience=10**6, step_on_batch=per_batch),
        callbacks.CSVLogger(str(folder / "log.csv"), batch_granularity=per_batch),
        callbacks.Interval(str(folder / "model.pt"), period=10**6, on_batch=per_batch),
        callbacks.StepLR(step_size=10**6, step_on_batch=per_batch),
        callbacks.TensorBoard(str(folder / "tb"), write_graph=False, write_batch_metrics=per_batch),
        callbacks.GradientNormClipping(10.0),
        callbacks.L2WeightDecay(1e-6),
    ]


@pytest.mark.parametrize("per_batch", [False, True], ids=["per epoch", "per batch"])
def test_built_in_callbacks_set_to_act_per_epoch_leave_the_values_unread(per_batch, tmp_path):
    record = RecordUnread()
    make_trial([record, *built_in_callbacks(tmp_path, per_batch)]).run(1)
    training_unread = not per_batch
    assert record.unread == [("training", training_unread), ("validation", training_unread)]


class ReadsNothing(Callback):
    def on_step_training(self, state):
        self.batches = state[torchbearer.BATCH]

    def reads_batch_metrics(self):
        return False


def test_a_callback_with_a_batch_hook_may_declare_that_it_reads_no_metric_values():
    record = RecordUnread()
    make_trial([record, ReadsNothing()]).run(1)
    assert record.unread == [("training", True), ("validation", True)]
    record = RecordUnread()
    make_trial([record, on_step_training(lambda state: None)]).run(1)
    assert record.unread == [("training", False), ("validation", True)]
