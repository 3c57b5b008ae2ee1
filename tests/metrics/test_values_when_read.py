"""Per-batch metric values are computed when something reads them, and every reader sees its own batch."""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Metric, Trial, callbacks, metrics
from torchbearer.metrics.metrics import PENDING_BATCHES


def classification(samples=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    return x, (x[:, 0] > 0).long()


def losses_and_running(trial_callbacks, batch_size=4, epochs=1, metric_names=("loss",)):
    """Run a small Trial; returns the per-batch losses it computed and the history."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    losses = []

    def cross_entropy(y_pred, y_true):  # records each loss without a callback, so nothing else reads the metrics
        loss = nn.functional.cross_entropy(y_pred, y_true)
        losses.append(loss.item())
        return loss

    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), cross_entropy,
                  metrics=list(metric_names), callbacks=list(trial_callbacks), verbose=0)  # fmt: skip
    x, y = classification()
    history = trial.with_train_data(x, y, batch_size=batch_size, shuffle=False).run(epochs)
    return losses, history


def running_means(losses, window=50, step=10):
    """0.5's running mean by hand: recomputed every ``step`` batches over the last ``window`` losses."""
    windows = [losses[max(0, b // step * step - window + 1) : b // step * step + 1] for b in range(len(losses))]
    return [sum(values) / len(values) for values in windows]


class LoggingEarlyStopping(callbacks.EarlyStopping):
    """A user's subclass of a built-in per-epoch callback that also logs a per-batch value."""

    def __init__(self):
        super().__init__(monitor="loss", patience=10)
        self.seen = []

    def on_step_training(self, state):
        self.seen.append(float(state[torchbearer.METRICS]["running_loss"]))


class LoggingGradientClipping(callbacks.GradientClipping):
    def __init__(self):
        super().__init__(10.0)
        self.seen = []

    def on_step_training(self, state):
        self.seen.append(float(state[torchbearer.METRICS]["running_loss"]))


@pytest.mark.parametrize("subclass", [LoggingEarlyStopping, LoggingGradientClipping])
def test_a_subclass_of_a_built_in_callback_reads_the_current_running_loss_every_batch(subclass):
    reader = subclass()
    losses, _ = losses_and_running([reader])
    assert len(losses) == 24
    assert reader.seen == pytest.approx(running_means(losses), rel=1e-6)


def test_a_state_key_metric_holding_a_vector_stays_a_tensor_that_can_be_cloned():
    estimate = torchbearer.state_key("estimate")
    clones = []

    @callbacks.on_sample
    def set_estimate(state):
        state[estimate] = torch.tensor([1.0, 2.0]) * state[torchbearer.BATCH]

    @callbacks.on_step_training
    def clone(state):
        clones.append(state[torchbearer.METRICS][str(estimate)].clone())

    losses, history = losses_and_running([set_estimate, clone], metric_names=(estimate, "loss"))
    assert [value.tolist() for value in clones] == [[float(b), 2.0 * b] for b in range(24)]
    assert history[-1][str(estimate)] == [23.0, 46.0]  # the history holds Python numbers


def test_values_kept_unread_for_later_stay_those_of_their_batch():
    kept = []
    keep = callbacks.on_step_training(lambda state: kept.append(state[torchbearer.METRICS]))
    losses, _ = losses_and_running([keep])
    assert [float(values["running_loss"]) for values in kept] == pytest.approx(running_means(losses), rel=1e-6)


class GroupSizes(Metric):
    """A child that records how many batches each hand-over brings."""

    def __init__(self, sizes):
        super().__init__("sizes")
        self.sizes = sizes

    def process_group(self, values, samples):
        self.sizes.append(len(values))


def test_unread_values_are_handed_over_in_groups_no_larger_than_the_cap():
    sizes = []
    tree = metrics.MetricTree(torchbearer.LOSS)
    tree.add_child(GroupSizes(sizes))
    losses_and_running([], batch_size=1, metric_names=(tree,))
    assert sum(sizes) == 96 and max(sizes) == PENDING_BATCHES and len(sizes) == 2


def test_a_reader_makes_the_pending_values_reach_the_children_at_once():
    sizes = []
    tree = metrics.MetricTree(torchbearer.LOSS)
    tree.add_child(GroupSizes(sizes))
    read_every_tenth = callbacks.on_step_training(
        lambda state: dict(state[torchbearer.METRICS]) if state[torchbearer.BATCH] % 10 == 9 else None
    )
    losses_and_running([read_every_tenth], batch_size=1, metric_names=(tree,))
    assert sizes[:9] == [10] * 9 and sum(sizes) == 96


class Overwrites(Metric):
    """A root that returns the same tensor every batch, changed in place."""

    def __init__(self):
        super().__init__("same")
        self.buffer = torch.zeros(())

    def process(self, *args):
        self.buffer.fill_(float(args[0][torchbearer.BATCH]))
        return self.buffer


def test_a_root_value_changed_in_place_before_it_was_aggregated_raises():
    with pytest.raises(torchbearer.errors.MetricError, match="changed in place"):
        losses_and_running([], metric_names=(metrics.mean(Overwrites()),))
