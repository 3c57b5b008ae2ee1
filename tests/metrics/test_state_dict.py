"""Metric ``state_dict`` / ``load_state_dict``: a metric rebuilt from a saved state continues exactly.

Every test saves the state with ``torch.save`` and reads it back with ``weights_only=True`` (so only
plain types pass), loads it into a fresh metric, feeds both metrics the same further batches and
compares the outputs bit for bit.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.bases import Metric
from torchbearer.metrics import DefaultAccuracy, EpochLambda, Masked, MetricList, RunningMean, mean, running_mean, std
from torchbearer.metrics import var as var_of


def saved_and_loaded(state_dict: dict) -> dict:
    """``state_dict`` written by ``torch.save`` and read back with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_identical(first: Any, second: Any) -> None:
    """Same keys; tensors equal element for element and in dtype; other values equal."""
    if isinstance(first, dict):
        assert isinstance(second, dict) and list(first) == list(second)
        for key in first:
            assert_identical(first[key], second[key])
    elif isinstance(first, (list, tuple)):
        assert len(first) == len(second)
        for first_item, second_item in zip(first, second):
            assert_identical(first_item, second_item)
    elif isinstance(first, torch.Tensor):
        assert isinstance(second, torch.Tensor) and first.dtype == second.dtype and torch.equal(first, second)
    else:
        assert first == second


def feed(metric: Metric, states: list[dict], first_batch: int = 0) -> list:
    """Per-batch outputs of ``metric`` for ``states`` (numbered from ``first_batch``), without gradients."""
    with torch.no_grad():
        return [metric.process({**state, torchbearer.BATCH: first_batch + i}) for i, state in enumerate(states)]


def finish(metric: Metric, state: dict) -> Any:
    with torch.no_grad():
        return metric.process_final(state)


def start_pass(*metrics: Metric, state: dict | None = None) -> None:
    for metric in metrics:
        metric.train()
        metric.reset(state if state is not None else {})


def classification_batches(count: int, size: int = 5, classes: int = 3) -> list[dict]:
    """Batches with one ignored target each (so accuracy counts are tensors) and a scalar loss."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        y_true = torch.randint(0, classes, (size,), generator=generator)
        y_true[0] = -100
        batches.append({
            torchbearer.Y_PRED: torch.randn(size, classes, generator=generator),
            torchbearer.Y_TRUE: y_true,
            torchbearer.LOSS: torch.rand((), generator=generator) * 3,
        })  # fmt: skip
    return batches


def binary_batches(count: int, size: int = 6) -> list[dict]:
    generator = torch.Generator().manual_seed(2)
    return [
        {
            torchbearer.Y_PRED: torch.rand(size, 1, generator=generator),
            torchbearer.Y_TRUE: torch.randint(0, 2, (size, 1), generator=generator).float(),
        }
        for _ in range(count)
    ]


class MaskedAccuracy(Metric):
    """Per-sample accuracy as a :class:`Masked` value (ignored targets masked out), with no statistics."""

    def __init__(self) -> None:
        super().__init__("acc")

    def process(self, *args: Any) -> Masked:
        y_pred, y_true = args[0][torchbearer.Y_PRED], args[0][torchbearer.Y_TRUE]
        return Masked((y_pred.argmax(1) == y_true).float(), y_true != -100)


def loss_with_short_window() -> Metric:
    """The batch loss with its pass mean and a 3-batch running mean recomputed every 2 batches."""
    return running_mean(batch_size=3, step_size=2)(mean(torchbearer.LOSS))


def test_base_metric_state_is_empty_and_load_returns_the_metric():
    metric = Metric("plain")
    assert metric.state_dict() == {}
    assert metric.load_state_dict({}) is metric


def test_running_means_carry_their_window_over_an_epoch_boundary_after_resume():
    def build() -> MetricList:
        return MetricList([loss_with_short_window(), "cat_acc"])

    batches = classification_batches(12)
    original = build()
    start_pass(original)
    feed(original, batches[:7])
    finish(original, batches[6])

    resumed = build().load_state_dict(saved_and_loaded(original.state_dict()))  # loaded before the reset
    start_pass(original, resumed)
    outputs = feed(original, batches[7:])
    assert_identical(feed(resumed, batches[7:]), outputs)
    assert_identical(finish(resumed, batches[-1]), finish(original, batches[-1]))
    assert set(outputs[0]) == {"running_loss", "running_acc"}


def test_running_mean_without_the_saved_window_gives_other_values():
    batches = classification_batches(8)
    original, fresh = loss_with_short_window(), loss_with_short_window()
    start_pass(original)
    feed(original, batches[:7])
    start_pass(original, fresh)
    assert feed(fresh, batches[7:])[0]["running_loss"] != feed(original, batches[7:])[0]["running_loss"]


def test_running_mean_saves_its_window_oldest_first_after_the_ring_wrapped():
    metric = RunningMean("running_x", batch_size=3, step_size=1)
    metric.reset({})
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        metric.process(torch.tensor(value))
    state = saved_and_loaded(metric.state_dict())
    assert torch.equal(state["window"][:, 0], torch.tensor([3.0, 4.0, 5.0]))
    assert state["calls"] == 5 and torch.equal(state["result"], torch.tensor(4.0))
    resumed = RunningMean("running_x", batch_size=3, step_size=1).load_state_dict(state)
    assert_identical(resumed.process(torch.tensor(9.0)), metric.process(torch.tensor(9.0)))
    assert resumed.process(torch.tensor(0.0)).item() == pytest.approx((5.0 + 9.0 + 0.0) / 3)


def test_running_mean_restores_the_call_count_mid_epoch():
    batches = classification_batches(9)
    original, resumed = loss_with_short_window(), loss_with_short_window()
    start_pass(original)
    feed(original, batches[:3])  # calls 0 and 2 recomputed; call 3 will not, call 4 will
    start_pass(resumed)
    resumed.load_state_dict(saved_and_loaded(original.state_dict()))  # loaded after the reset
    assert_identical(feed(resumed, batches[3:]), feed(original, batches[3:]))


def test_mean_std_and_var_continue_mid_pass_after_resume():
    def build() -> Metric:
        return var_of(std(mean(MaskedAccuracy())))

    batches = classification_batches(8)
    original, resumed = build(), build()
    start_pass(original)
    feed(original, batches[:4])
    start_pass(resumed)
    resumed.load_state_dict(saved_and_loaded(original.state_dict()))
    feed(original, batches[4:])
    feed(resumed, batches[4:])
    final = finish(original, batches[-1])
    assert set(final) == {"acc", "acc_std", "acc_var"}
    assert_identical(finish(resumed, batches[-1]), final)


def test_mean_over_a_dimension_continues_mid_pass_after_resume():
    def build() -> Metric:
        return mean(dim=0)(torchbearer.Y_PRED)

    batches = classification_batches(6)
    original, resumed = build(), build()
    start_pass(original)
    feed(original, batches[:3])
    start_pass(resumed)
    resumed.load_state_dict(saved_and_loaded(original.state_dict()))
    feed(original, batches[3:])
    feed(resumed, batches[3:])
    assert_identical(finish(resumed, batches[-1]), finish(original, batches[-1]))


def test_saved_state_does_not_change_when_the_metric_goes_on():
    metric = loss_with_short_window()
    batches = classification_batches(6)
    start_pass(metric)
    feed(metric, batches[:3])
    state = metric.state_dict()
    snapshot = copy.deepcopy(state)
    feed(metric, batches[3:])
    assert_identical(state, snapshot)


def accuracy_so_far(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    return (y_pred.argmax(1) == y_true).float().mean()


def test_epoch_lambda_continues_mid_pass_with_the_predictions_seen_so_far():
    def build() -> EpochLambda:
        return EpochLambda("so_far", accuracy_so_far, running=True, step_size=2)

    batches = classification_batches(7)
    original, resumed = build(), build()
    start_pass(original)
    feed(original, batches[:3])
    state = saved_and_loaded(original.state_dict())
    assert state["predictions"].shape == (15, 3) and state["targets"].shape == (15,)
    start_pass(resumed)
    resumed.load_state_dict(state)
    assert_identical(feed(resumed, batches[3:], first_batch=3), feed(original, batches[3:], first_batch=3))
    assert_identical(finish(resumed, batches[-1]), finish(original, batches[-1]))


def test_epoch_lambda_state_before_any_batch_is_empty_and_loads():
    metric = EpochLambda("so_far", accuracy_so_far)
    assert metric.state_dict() == {}
    start_pass(metric)
    assert metric.load_state_dict({}).process_final({}) is None


def bce_state() -> dict:
    return {torchbearer.CRITERION: nn.BCELoss()}


def test_default_accuracy_loaded_before_resolution_continues_after_the_epoch_boundary():
    batches = binary_batches(9)
    original = MetricList(["acc"])
    start_pass(original, state=bce_state())
    feed(original, batches[:5])
    finish(original, batches[4])
    state = saved_and_loaded(original.state_dict())
    assert state["names"] == ["binary_acc"]

    resumed = MetricList(["acc"]).load_state_dict(state)  # 'acc' is not resolved yet: it keeps the state
    assert resumed.state_dict()["metrics"] == state["metrics"]  # saved again before resolution: nothing lost
    start_pass(original, resumed, state=bce_state())
    outputs = feed(original, batches[5:])
    assert set(outputs[0]) == {"running_binary_acc"}
    assert_identical(feed(resumed, batches[5:]), outputs)
    assert_identical(finish(resumed, batches[-1]), finish(original, batches[-1]))


def test_default_accuracy_loaded_after_resolution_continues_mid_pass():
    batches = binary_batches(9)
    original, resumed = DefaultAccuracy(), DefaultAccuracy()
    start_pass(original, state=bce_state())
    feed(original, batches[:4])
    start_pass(resumed, state=bce_state())
    resumed.load_state_dict(saved_and_loaded(original.state_dict()))
    assert_identical(feed(resumed, batches[4:]), feed(original, batches[4:]))
    assert_identical(finish(resumed, batches[-1]), finish(original, batches[-1]))


def test_default_accuracy_state_for_another_criterion_is_refused_at_resolution():
    original = DefaultAccuracy()
    start_pass(original, state=bce_state())
    feed(original, binary_batches(2))
    resumed = DefaultAccuracy().load_state_dict(saved_and_loaded(original.state_dict()))
    with pytest.raises(ValueError, match="'binary_acc'.*'acc'"):
        resumed.reset({torchbearer.CRITERION: nn.CrossEntropyLoss()})


def test_default_accuracy_before_resolution_has_nothing_to_save():
    fresh = DefaultAccuracy()
    assert fresh.state_dict() == {}
    resumed = DefaultAccuracy().load_state_dict(saved_and_loaded(fresh.state_dict()))
    resumed.reset(bce_state())  # nothing to apply, so any criterion resolves
    assert resumed.name == "binary_acc"


def test_metric_list_refuses_a_state_saved_for_other_metrics_naming_both_lists():
    state = saved_and_loaded(MetricList(["loss", "mse"]).state_dict())
    with pytest.raises(ValueError, match=r"\['loss', 'mse'\].*\['mse', 'loss'\]"):
        MetricList(["mse", "loss"]).load_state_dict(state)
    with pytest.raises(ValueError, match=r"\['loss', 'mse'\].*\['loss'\]"):
        MetricList(["loss"]).load_state_dict(state)


def test_metric_tree_refuses_a_state_with_another_number_of_children():
    state = saved_and_loaded(loss_with_short_window().state_dict())
    with pytest.raises(ValueError, match="2 children.*has 1"):
        mean(torchbearer.LOSS).load_state_dict(state)


def test_stateless_metrics_save_empty_states():
    metrics = MetricList(["lr", "epoch", torchbearer.metrics.TimerMetric()])
    assert saved_and_loaded(metrics.state_dict()) == {"metrics": [{}, {}, {}], "names": ["lr", "epoch", "timer"]}
    assert metrics.load_state_dict({"metrics": [{}, {}, {}], "names": ["lr", "epoch", "timer"]}) is metrics


def test_mixup_accuracy_continues_after_resume():
    from torchbearer.callbacks.mixup import MixupAcc

    batches = [
        {**batch, torchbearer.MIXUP_LAMBDA: torch.tensor(0.7), torchbearer.Y_TRUE: (batch[torchbearer.Y_TRUE],) * 2}
        for batch in classification_batches(6)
    ]
    original, resumed = MixupAcc(), MixupAcc()
    start_pass(original)
    feed(original, batches[:3])
    start_pass(resumed)
    resumed.load_state_dict(saved_and_loaded(original.state_dict()))
    assert_identical(feed(resumed, batches[3:]), feed(original, batches[3:]))
    assert_identical(finish(resumed, batches[-1]), finish(original, batches[-1]))


def make_trial(criterion: nn.Module, target: torch.Tensor, outputs: int) -> Trial:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, outputs), nn.Sigmoid()) if outputs == 1 else nn.Linear(4, outputs)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, metrics=["loss", "acc"], verbose=0)
    x = torch.randn(48, 4, generator=torch.Generator().manual_seed(4))
    return trial.with_train_data(x, target, batch_size=4, shuffle=False, num_workers=0)


@pytest.mark.parametrize(
    ("criterion", "outputs", "accuracy"),
    [(nn.CrossEntropyLoss(), 3, "running_acc"), (nn.BCELoss(), 1, "running_binary_acc")],
)
def test_resumed_trial_continues_running_metrics_like_the_original(criterion, outputs, accuracy):
    generator = torch.Generator().manual_seed(5)
    if outputs == 1:
        target = torch.randint(0, 2, (48, 1), generator=generator).float()
    else:
        target = torch.randint(0, 3, (48,), generator=generator)
    original = make_trial(criterion, target, outputs)
    original.run(2)
    metric_state = saved_and_loaded(original.state[torchbearer.METRIC_LIST].state_dict())
    trial_state = saved_and_loaded(original.state_dict())
    without_metrics = {key: value for key, value in trial_state.items() if key != str(torchbearer.METRIC_LIST)}

    resumed, control, whole = (make_trial(criterion, target, outputs) for _ in range(3))
    for trial in (resumed, control):  # same weights, optimizer and history; only the control lacks metric state
        trial.load_state_dict(without_metrics)
    resumed.state[torchbearer.METRIC_LIST].load_state_dict(metric_state)
    whole.load_state_dict(trial_state)  # the Trial's own state_dict carries the metric state too

    expected = original.run(3)[-1]
    continued, from_trial_state, without_metric_state = resumed.run(3)[-1], whole.run(3)[-1], control.run(3)[-1]
    for key in ("running_loss", accuracy):
        assert continued[key] == from_trial_state[key] == expected[key]
    assert without_metric_state["running_loss"] != expected["running_loss"]
    assert continued["loss"] == expected["loss"] and len(resumed.state[torchbearer.HISTORY]) == 3


def torchmetrics_pair(make: Any) -> tuple[Metric, Metric]:
    from torchbearer.integrations.torchmetrics import TorchMetric

    return TorchMetric(make(), name="tm"), TorchMetric(make(), name="tm")


@pytest.mark.parametrize("kind", ["tensor states", "list states"])
def test_torchmetrics_metric_continues_mid_pass_after_resume(kind):
    classification = pytest.importorskip("torchmetrics.classification")
    if kind == "tensor states":
        make = lambda: classification.MulticlassAccuracy(num_classes=3, ignore_index=-100)  # noqa: E731
        batches = classification_batches(6)
    else:
        make = lambda: classification.BinaryAUROC(thresholds=None)  # noqa: E731
        batches = [{**batch, torchbearer.Y_TRUE: batch[torchbearer.Y_TRUE].long()} for batch in binary_batches(6)]
    original, resumed = torchmetrics_pair(make)
    start_pass(original)
    feed(original, batches[:3])
    state = saved_and_loaded(original.state_dict())
    start_pass(resumed)
    resumed.load_state_dict(state)
    feed(original, batches[3:])
    feed(resumed, batches[3:])
    final = finish(original, batches[-1])
    assert list(final) == ["tm"]
    assert_identical(finish(resumed, batches[-1]), final)
    assert_identical(saved_and_loaded(original.state_dict()), saved_and_loaded(resumed.state_dict()))


def test_torchmetrics_metric_keeps_training_and_evaluation_states_apart():
    classification = pytest.importorskip("torchmetrics.classification")
    original, resumed = torchmetrics_pair(lambda: classification.MulticlassAccuracy(num_classes=3, ignore_index=-100))
    batches = classification_batches(4)
    start_pass(original)
    feed(original, batches[:2])
    original.eval()
    original.reset({})
    feed(original, batches[2:])
    resumed.load_state_dict(saved_and_loaded(original.state_dict()))
    for metric in (original, resumed):
        metric.train()
    assert_identical(finish(resumed, {}), finish(original, {}))
    for metric in (original, resumed):
        metric.eval()
    assert_identical(finish(resumed, {}), finish(original, {}))


def test_torchmetrics_state_for_another_metric_is_refused_naming_the_states():
    classification = pytest.importorskip("torchmetrics.classification")
    accuracy = torchmetrics_pair(lambda: classification.MulticlassAccuracy(num_classes=3))[0]
    auroc = torchmetrics_pair(lambda: classification.BinaryAUROC(thresholds=None))[0]
    with pytest.raises(ValueError, match=r"\['preds', 'target'\].*MulticlassAccuracy has \['fn', 'fp', 'tn', 'tp'\]"):
        accuracy.load_state_dict(saved_and_loaded(auroc.state_dict()))


def on_cpu(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [on_cpu(item) for item in value]
    return value.cpu() if isinstance(value, torch.Tensor) else value


def check_state_loaded_on_the_cpu_continues_on(device: str) -> None:
    """Save a state of metrics fed on ``device``, read it onto the CPU, and continue both on ``device``."""

    def build() -> MetricList:
        return MetricList([loss_with_short_window(), "cat_acc", var_of(std(torchbearer.Y_PRED))])

    batches = [{key: value.to(device) for key, value in batch.items()} for batch in classification_batches(12)]
    for load_after_reset in (False, True):
        original, resumed = build(), build()
        start_pass(original)
        feed(original, batches[:7])
        if not load_after_reset:  # an epoch boundary: the state of a finished pass, loaded before the next reset
            finish(original, batches[6])
            start_pass(original)
        buffer = io.BytesIO()
        torch.save(original.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, map_location="cpu", weights_only=True)
        if load_after_reset:  # mid-pass: reset first, then load
            start_pass(resumed)
            resumed.load_state_dict(state)
        else:
            resumed.load_state_dict(state)
            start_pass(resumed)
        assert_identical(on_cpu(feed(resumed, batches[7:])), on_cpu(feed(original, batches[7:])))
        assert_identical(on_cpu(finish(resumed, batches[-1])), on_cpu(finish(original, batches[-1])))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_state_saved_on_cuda_and_read_onto_the_cpu_continues_on_cuda():
    check_state_loaded_on_the_cpu_continues_on("cuda")
