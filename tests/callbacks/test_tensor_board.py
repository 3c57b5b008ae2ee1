import os
import sys

import pytest
import torch

import torchbearer
from torchbearer.bases import Callback
from torchbearer.callbacks import tensor_board, writers
from torchbearer.callbacks.tensor_board import (
    AbstractTensorBoard,
    TensorBoard,
    TensorBoardImages,
    TensorBoardProjector,
    TensorBoardText,
    VisdomParams,
)

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator


class TinyConvNet(torch.nn.Module):
    """1x4x4 images -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, kernel_size=3, padding=1)
        self.fc = torch.nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _trial(callbacks, images=False, validation=True):
    """A tiny model trained on 4 batches of 10 (and validated on the same 40 samples)."""
    model = TinyConvNet() if images else torch.nn.Linear(4, 3)
    x = torch.rand(40, 1, 4, 4) if images else torch.randn(40, 4)
    y = torch.randint(0, 3, (40,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = torchbearer.Trial(
        model, optimizer, torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks, verbose=0
    )
    trial.with_train_data(x, y, batch_size=10)
    if validation:
        trial.with_val_data(x, y, batch_size=10)
    return trial


@pytest.fixture(autouse=True)
def _close_writers_after_each_test():
    """Callbacks keep their writers between a trial's calls; close what a test left open."""
    yield
    writers._close_open_writers()


def _events(path):
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def _scalars(events, tag):
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _texts(events, tag):
    return [(event.step, event.tensor_proto.string_val[0].decode()) for event in events.Tensors(tag + "/text_summary")]


def test_epoch_metrics_are_scalars_at_each_epoch_equal_to_the_history(tmp_path):
    history = _trial([TensorBoard(str(tmp_path), write_graph=False)]).run(2)

    events = _events(tmp_path / "Linear_torchbearer")
    for name in ("loss", "acc", "val_loss", "val_acc", "running_loss"):
        assert _scalars(events, f"epoch/{name}") == [(e, pytest.approx(history[e][name])) for e in range(2)]


def test_batch_metrics_go_to_a_directory_per_epoch_every_batch_step_size(tmp_path):
    seen = []

    class RecordRunningLoss(Callback):
        def on_step_training(self, state):
            seen.append(
                (state[torchbearer.EPOCH], state[torchbearer.BATCH], state[torchbearer.METRICS]["running_loss"])
            )

    callback = TensorBoard(str(tmp_path), write_graph=False, write_batch_metrics=True, batch_step_size=2)
    _trial([callback, RecordRunningLoss()]).run(2)

    for epoch in range(2):
        events = _events(tmp_path / "Linear_torchbearer" / f"epoch-{epoch}")
        expected = [(batch, pytest.approx(loss)) for e, batch, loss in seen if e == epoch and batch % 2 == 0]
        assert _scalars(events, "batch/running_loss") == expected
        assert "epoch/loss" not in events.Tags()["scalars"]


def test_model_graph_is_written_once(tmp_path):
    _trial([TensorBoard(str(tmp_path))], images=True).run(2)

    graph = _events(tmp_path / "TinyConvNet_torchbearer").Graph()
    names = [node.name for node in graph.node]
    assert any("Conv2d[conv]" in name for name in names)
    assert any("Linear[fc]" in name for name in names)


def test_graph_failure_warns_and_training_goes_on(tmp_path):
    class DictOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            return {"logits": self.linear(x)}  # a dict output cannot be traced in strict mode

    def criterion(output, target):
        return torch.nn.functional.cross_entropy(output["logits"], target)

    model = DictOutput()
    callback = TensorBoard(str(tmp_path))
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, callbacks=[callback], verbose=0
    )
    trial.with_train_data(torch.randn(20, 4), torch.randint(0, 3, (20,)), batch_size=10)

    with pytest.warns(UserWarning, match="could not write the graph of DictOutput"):
        history = trial.run(1)
    assert len(history) == 1


def test_second_run_logs_into_the_same_directory(tmp_path):
    callback = TensorBoard(str(tmp_path), write_graph=False)
    trial = _trial([callback])
    trial.run(1)
    trial.run(2)

    assert sorted(os.listdir(tmp_path)) == ["Linear_torchbearer"]
    assert all(not entry.is_dir() for entry in os.scandir(tmp_path / "Linear_torchbearer"))
    assert [step for step, _ in _scalars(_events(tmp_path / "Linear_torchbearer"), "epoch/loss")] == [0, 1]


def test_writers_are_flushed_after_each_call_kept_for_the_next_and_closed_by_close(tmp_path):
    callbacks = [
        TensorBoard(str(tmp_path), write_batch_metrics=True),
        TensorBoardText(str(tmp_path), write_batch_metrics=True),
    ]
    _trial(callbacks).run(1)

    assert [step for step, _ in _scalars(_events(tmp_path / "Linear_torchbearer"), "epoch/loss")] == [0]
    assert all(callback.writer is not None and callback.batch_writer is None for callback in callbacks)
    assert list(writers._writers) == [(str(tmp_path / "Linear_torchbearer"), False)]  # the batch writer closed
    for callback in callbacks:
        callback.close()
    assert writers._writers == {}
    assert all(callback.writer is None for callback in callbacks)


def test_writers_are_flushed_and_events_kept_when_the_run_fails(tmp_path):
    class FailInSecondEpoch(Callback):
        def on_step_training(self, state):
            if state[torchbearer.EPOCH] == 1:
                raise RuntimeError("boom")

    callback = TensorBoard(str(tmp_path), write_graph=False, write_batch_metrics=True)
    with pytest.raises(RuntimeError, match="boom"):
        _trial([callback, FailInSecondEpoch()]).run(2)

    assert callback.batch_writer is None
    assert [step for step, _ in _scalars(_events(tmp_path / "Linear_torchbearer"), "epoch/loss")] == [0]
    assert _scalars(_events(tmp_path / "Linear_torchbearer" / "epoch-1"), "batch/running_loss")[0][0] == 0


def _event_files(folder):
    return [entry.name for entry in os.scandir(folder) if entry.name.startswith("events.out.tfevents")]


def test_evaluate_is_logged_at_the_last_trained_epoch_in_the_trials_one_event_file(tmp_path):
    callbacks = [TensorBoard(str(tmp_path), write_graph=False), TensorBoardText(str(tmp_path), log_trial_summary=False)]
    trial = _trial(callbacks)
    trial.with_test_generator(trial.state[torchbearer.VALIDATION_GENERATOR])
    trial.run(3)
    validated = trial.evaluate()
    trial.run(4)
    tested = trial.evaluate(data_key=torchbearer.TEST_DATA)

    folder = tmp_path / "Linear_torchbearer"
    assert len(_event_files(folder)) == 1
    events = _events(folder)
    history = trial.state[torchbearer.HISTORY]
    assert _scalars(events, "epoch/val_loss") == [(e, pytest.approx(history[e]["val_loss"])) for e in range(3)] + [
        (2, pytest.approx(validated["val_loss"])),
        (3, pytest.approx(history[3]["val_loss"])),
    ]
    assert _scalars(events, "epoch/test_loss") == [(3, pytest.approx(tested["test_loss"]))]
    assert [step for step, _ in _texts(events, "epoch")] == [0, 1, 2, 2, 3, 3]


def test_evaluate_before_any_training_is_logged_at_epoch_minus_one(tmp_path):
    trial = _trial([TensorBoard(str(tmp_path), write_graph=False)])
    trial.evaluate()
    trial.run(1)

    assert [step for step, _ in _scalars(_events(tmp_path / "Linear_torchbearer"), "epoch/val_loss")] == [-1, 0]


def test_add_metric_logs_the_elements_of_lists_and_dicts(tmp_path):
    writer = tensor_board.get_writer(str(tmp_path), "test")
    AbstractTensorBoard.add_metric(writer.add_scalar, "acc", [0.5, 0.25], 3)
    AbstractTensorBoard.add_metric(writer.add_scalar, "loss", {"a": 1.0, "b": (2.0, 3.0)}, 4)
    tensor_board.close_writer(str(tmp_path), "test")

    events = _events(tmp_path)
    assert _scalars(events, "acc_0") == [(3, 0.5)]
    assert _scalars(events, "acc_1") == [(3, 0.25)]
    assert _scalars(events, "loss_a") == [(4, 1.0)]
    assert _scalars(events, "loss_b_1") == [(4, 3.0)]


def test_add_metric_warns_when_a_value_cannot_be_logged(tmp_path):
    writer = tensor_board.get_writer(str(tmp_path), "test")
    with pytest.warns(UserWarning, match="Failed to log metric to tensorboard with error"):
        AbstractTensorBoard.add_metric(writer.add_scalar, "name", "not a number", 0)
    tensor_board.close_writer(str(tmp_path), "test")


def test_text_logs_the_trial_summary_and_a_metrics_table_per_epoch(tmp_path):
    callback = TensorBoardText(str(tmp_path), write_batch_metrics=True, batch_step_size=2)
    trial = _trial([callback])
    history = trial.run(2)

    events = _events(tmp_path / "Linear_torchbearer")
    [(step, summary)] = _texts(events, "trial")
    assert step == 1
    assert summary == str(trial).replace("\n", "\n \n")
    epoch_texts = _texts(events, "epoch")
    assert [step for step, _ in epoch_texts] == [0, 1]
    assert epoch_texts[1][1].startswith("<table><tr><th>Metric</th><th>Value</th></tr>")
    assert f"<tr><td>val_loss</td><td>{history[1]['val_loss']}</td></tr>" in epoch_texts[1][1]
    batch_texts = _texts(_events(tmp_path / "Linear_torchbearer" / "epoch-1"), "batch")
    assert [step for step, _ in batch_texts] == [0, 2]
    assert "<td>running_loss</td>" in batch_texts[0][1]


def test_table_formatter_makes_one_row_per_metric():
    text = str({"loss": float("nan"), "per_class": [0.5, 0.25], "name": "a, b: c", "<tag>": 1})

    assert TensorBoardText.table_formatter(text) == (
        "<table><tr><th>Metric</th><th>Value</th></tr>"
        "<tr><td>loss</td><td>nan</td></tr>"
        "<tr><td>per_class</td><td>[0.5, 0.25]</td></tr>"
        "<tr><td>name</td><td>&#x27;a, b: c&#x27;</td></tr>"
        "<tr><td>&lt;tag&gt;</td><td>1</td></tr>"
        "</table>"
    )


def test_images_grid_of_num_images_is_written_each_epoch(tmp_path):
    pytest.importorskip("torchvision")
    callback = TensorBoardImages(str(tmp_path), name="Inputs", key=torchbearer.X, num_images=8, nrow=4)
    _trial([callback], images=True).run(2)

    images = _events(tmp_path / "TinyConvNet_torchbearer").Images("Inputs")
    # 8 images of 4x4 in rows of 4 with padding 2: (4 + 2) * 4 + 2 wide, (4 + 2) * 2 + 2 high
    assert [(image.step, image.width, image.height) for image in images] == [(0, 26, 14), (1, 26, 14)]


def test_images_written_once_when_write_each_epoch_is_false(tmp_path):
    pytest.importorskip("torchvision")
    callback = TensorBoardImages(str(tmp_path), key=torchbearer.X, num_images=4, write_each_epoch=False)
    _trial([callback], images=True).run(2)

    assert [image.step for image in _events(tmp_path / "TinyConvNet_torchbearer").Images("Image")] == [0]


def test_images_from_a_validation_pass_shorter_than_num_images_are_written(tmp_path):
    pytest.importorskip("torchvision")
    callback = TensorBoardImages(str(tmp_path), key=torchbearer.X, num_images=100, nrow=10, padding=0)
    _trial([callback], images=True).run(1)

    [image] = _events(tmp_path / "TinyConvNet_torchbearer").Images("Image")
    assert (image.width, image.height) == (40, 16)  # the 40 validation images, 10 per row


def test_projector_writes_data_once_and_features_every_epoch(tmp_path):
    first_labels = {}

    class RecordFirstLabels(Callback):
        def on_step_validation(self, state):
            labels = first_labels.setdefault(state[torchbearer.EPOCH], [])
            labels.extend(state[torchbearer.Y_TRUE].tolist()[: 15 - len(labels)])

    callback = TensorBoardProjector(str(tmp_path), num_images=15, avg_pool_size=2)
    _trial([callback, RecordFirstLabels()], images=True).run(2)

    log_dir = tmp_path / "TinyConvNet_torchbearer"
    config = (log_dir / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "data:-0001"' in config
    assert 'tensor_name: "features:00000"' in config
    assert 'tensor_name: "features:00001"' in config
    # data: the 2x2-pooled inputs averaged over channels (4 values) in epoch 0; features: the 3 logits
    for subdir, width, epoch in (("-0001/data", 4, 0), ("00001/features", 3, 1)):
        tensors = (log_dir / subdir / "tensors.tsv").read_text().splitlines()
        assert len(tensors) == 15
        assert all(len(line.split("\t")) == width for line in tensors)
        metadata = (log_dir / subdir / "metadata.tsv").read_text().splitlines()
        assert [int(line) for line in metadata] == first_labels[epoch]
        assert (log_dir / subdir / "sprite.png").exists()


def test_projector_records_an_evaluation_at_the_last_trained_epoch_beside_that_epochs_features(tmp_path):
    callback = TensorBoardProjector(str(tmp_path), num_images=15, avg_pool_size=2)
    trial = _trial([callback], images=True)
    trial.run(2)
    trial.evaluate()

    config = (tmp_path / "TinyConvNet_torchbearer" / "projector_config.pbtxt").read_text()
    names = [line.split('"')[1] for line in config.splitlines() if "tensor_name" in line]
    assert names == ["data:-0001", "features:00000", "features:00001", "features_val:00001"]


def test_projector_evaluation_before_training_writes_the_data_at_step_minus_one(tmp_path):
    callback = TensorBoardProjector(str(tmp_path), num_images=15, avg_pool_size=2)
    _trial([callback], images=True).evaluate()

    config = (tmp_path / "TinyConvNet_torchbearer" / "projector_config.pbtxt").read_text()
    names = [line.split('"')[1] for line in config.splitlines() if "tensor_name" in line]
    assert names == ["data:-0001", "features_val:-0001"]


def test_missing_tensorboard_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)

    with pytest.raises(ImportError, match=r"pip install torchbearer\[tensorboard\]"):
        TensorBoard()


def test_missing_visdom_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "visdom", None)

    with pytest.raises(ImportError, match=r"pip install torchbearer\[visdom\]"):
        TensorBoardText(visdom=True)


def test_visdom_params_give_lower_case_kwargs_with_instance_overrides():
    params = VisdomParams()
    params.PORT = 9000
    params.ENV = "experiment"

    kwargs = params.__to_dict__()
    assert kwargs["port"] == 9000 and kwargs["env"] == "experiment"
    assert kwargs["server"] == "http://localhost" and kwargs["use_incoming_socket"] is True
    assert set(kwargs) == {
        "server", "endpoint", "port", "ipv6", "http_proxy_host", "http_proxy_port", "env", "send",
        "raise_exceptions", "use_incoming_socket", "log_to_filename",
    }  # fmt: skip


def test_ranks_other_than_zero_write_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    callback = TensorBoard(str(tmp_path), write_batch_metrics=True, batch_step_size=1)
    state = {
        torchbearer.MODEL: torch.nn.Linear(4, 3),
        torchbearer.X: torch.randn(2, 4),
        torchbearer.EPOCH: 0,
        torchbearer.BATCH: 0,
        torchbearer.METRICS: {"loss": 0.5},
    }
    for hook in ("on_start", "on_start_epoch", "on_sample", "on_step_training", "on_end_epoch", "on_end"):
        getattr(callback, hook)(state)

    assert os.listdir(tmp_path) == []
    assert writers._writers == {}
