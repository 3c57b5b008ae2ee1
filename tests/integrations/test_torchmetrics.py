import pytest
import torch
import torchmetrics
from sklearn.metrics import f1_score

import torchbearer
from torchbearer.callbacks.decorators import on_step_training
from torchbearer.integrations.torchmetrics import TorchMetric, maybe_wrap, snake_case


def _data():
    x = torch.randn(40, 4)
    return x, x[:, :3].argmax(1)


def _frozen_trial(metrics, callbacks=()):
    """A trial whose model never changes (lr=0), so whole-pass values can be computed by hand afterwards."""
    x, y = _data()
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        torch.nn.CrossEntropyLoss(),
        metrics=metrics,
        callbacks=list(callbacks),
        verbose=0,
    )
    trial.with_train_data(x[:24], y[:24], batch_size=5, num_workers=0)  # 5 batches, the last one short
    trial.with_val_data(x[24:], y[24:], batch_size=6, num_workers=0)
    return trial, model, x, y


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _macro_f1(model, x, y):
    with torch.no_grad():
        return f1_score(y.numpy(), model(x).argmax(1).numpy(), average="macro", labels=[0, 1, 2])


def test_snake_case_of_torchmetrics_class_names():
    assert snake_case("MulticlassAccuracy") == "multiclass_accuracy"
    assert snake_case("MulticlassF1Score") == "multiclass_f1_score"
    assert snake_case("BinaryAUROC") == "binary_auroc"
    assert snake_case("MeanSquaredError") == "mean_squared_error"


def test_accuracy_and_f1_over_whole_passes_with_val_prefixes():
    accuracy = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3))
    f1 = TorchMetric(torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro"), name="f1")
    trial, model, x, y = _frozen_trial(["loss", accuracy, f1])

    record = trial.run(1)[0]

    assert record["multiclass_accuracy"] == pytest.approx(_accuracy(model, x[:24], y[:24]))
    assert record["val_multiclass_accuracy"] == pytest.approx(_accuracy(model, x[24:], y[24:]))
    assert record["f1"] == pytest.approx(_macro_f1(model, x[:24], y[:24]))
    assert record["val_f1"] == pytest.approx(_macro_f1(model, x[24:], y[24:]))
    assert isinstance(record["f1"], float)


def test_raw_torchmetrics_objects_in_the_metric_list_work_like_built_in_metrics():
    trial, model, x, y = _frozen_trial(["loss", torchmetrics.Accuracy(task="multiclass", num_classes=3)])

    record = trial.run(1)[0]

    assert record["multiclass_accuracy"] == pytest.approx(_accuracy(model, x[:24], y[:24]))
    assert record["val_multiclass_accuracy"] == pytest.approx(_accuracy(model, x[24:], y[24:]))


def test_each_pass_starts_from_a_reset_metric():
    metric = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3))
    trial, model, x, y = _frozen_trial([metric])

    history = trial.run(3)

    assert [record["multiclass_accuracy"] for record in history] == pytest.approx(
        [_accuracy(model, x[:24], y[:24])] * 3
    )
    assert metric.train_metric.update_count == 5  # one training pass worth of batches
    assert metric.eval_metric.update_count == 3


def test_training_and_evaluation_keep_separate_states():
    given = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    metric = TorchMetric(given)
    trial, model, x, y = _frozen_trial([metric])

    trial.run(1)

    assert metric.train_metric is given and metric.eval_metric is not given
    assert given.compute().item() == pytest.approx(_accuracy(model, x[:24], y[:24]))
    assert metric.eval_metric.compute().item() == pytest.approx(_accuracy(model, x[24:], y[24:]))


def test_evaluate_on_test_data_uses_the_test_prefix():
    metric = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3), name="acc_tm")
    trial, model, x, y = _frozen_trial([metric])
    trial.with_test_generator(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:10], y[:10]), 4))

    result = trial.evaluate(data_key=torchbearer.TEST_DATA)

    assert result == {"test_acc_tm": pytest.approx(_accuracy(model, x[:10], y[:10]))}


def test_no_value_is_produced_per_batch():
    seen = []

    @on_step_training
    def record(state):
        seen.append(set(state[torchbearer.METRICS]))

    metric = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3))
    trial, *_ = _frozen_trial([metric], callbacks=[record])

    trial.run(1)

    assert seen and all("multiclass_accuracy" not in keys for keys in seen)


def test_dict_and_tuple_results_are_flattened_into_named_values():
    class Pair(torchmetrics.Metric):
        def __init__(self):
            super().__init__()
            self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

        def update(self, preds, target):
            self.total += preds.sum()

        def compute(self):
            return {"sum": self.total, "double": 2 * self.total}

    metric = TorchMetric(Pair())
    metric.reset({})
    metric.process({torchbearer.Y_PRED: torch.ones(3), torchbearer.Y_TRUE: torch.zeros(3)})

    assert metric.process_final({}) == {"pair_sum": torch.tensor(3.0), "pair_double": torch.tensor(6.0)}


def test_a_pass_without_updates_produces_nothing():
    metric = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3))
    metric.eval(data_key=torchbearer.VALIDATION_DATA)
    metric.reset({})

    assert metric.process_final({}) is None


def test_maybe_wrap_wraps_only_torchmetrics_metrics():
    wrapped = maybe_wrap(torchmetrics.MeanSquaredError())

    assert isinstance(wrapped, TorchMetric) and wrapped.name == "mean_squared_error"
    assert maybe_wrap("acc") is None
    assert maybe_wrap(torch.nn.Linear(1, 1)) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_updates_on_the_gpu_do_not_synchronise_with_the_host():
    x, y = (part.cuda() for part in _data())
    predictions = torch.nn.Linear(4, 3).cuda()(x).detach()
    metric = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3, validate_args=False).cuda())
    metric.reset({})

    torch.cuda.set_sync_debug_mode("error")
    try:
        for start in range(0, 40, 5):
            metric.process(
                {torchbearer.Y_PRED: predictions[start : start + 5], torchbearer.Y_TRUE: y[start : start + 5]}
            )
    finally:
        torch.cuda.set_sync_debug_mode("default")

    value = metric.process_final({})["multiclass_accuracy"]
    assert value.device.type == "cuda"
    assert value.item() == pytest.approx((predictions.argmax(1) == y).float().mean().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metric_moves_to_the_gpu_with_the_batches_in_a_trial():
    metric = TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3))
    trial, model, x, y = _frozen_trial([metric])

    record = trial.to("cuda").run(1)[0]

    assert metric.train_metric.device.type == "cuda"
    model.cpu()
    assert record["multiclass_accuracy"] == pytest.approx(_accuracy(model, x[:24], y[:24]))
    assert record["val_multiclass_accuracy"] == pytest.approx(_accuracy(model, x[24:], y[24:]))
