import csv

import pytest
import torch

import torchbearer
from torchbearer.bases import Callback
from torchbearer.callbacks.csv_logger import CSVLogger
from torchbearer.metric_values import LazyValues


def _read(path, separator=","):
    with open(path, newline="") as file:
        return list(csv.reader(file, delimiter=separator))


def _trial(data, callbacks):
    """Linear(4, 3) trained with SGD on 4 batches of 10, validated on the same data."""
    x, y = data
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = torchbearer.Trial(
        model, optimizer, torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks, verbose=0
    )
    return trial.with_train_data(x, y, batch_size=10).with_val_data(x, y, batch_size=10)


def _epoch_state(epoch, **metrics):
    return {torchbearer.EPOCH: epoch, torchbearer.METRICS: metrics}


def test_one_row_per_epoch_holds_the_history_values(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    trial = _trial(classification_data, [CSVLogger(str(path))])
    history = trial.run(2)

    rows = _read(path)
    assert rows[0] == ["epoch", "running_acc", "running_loss", "acc", "loss", "val_acc", "val_loss"]
    assert len(rows) == 3
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        for name, text in zip(rows[0][1:], row[1:]):
            assert float(text) == pytest.approx(history[epoch][name])


def test_batch_granularity_header_lists_every_column_and_rows_align(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    seen_losses = []

    class RecordLoss(Callback):
        def on_step_training(self, state):
            seen_losses.append(float(state[torchbearer.METRICS]["running_loss"]))

    trial = _trial(classification_data, [CSVLogger(str(path), batch_granularity=True), RecordLoss()])
    history = trial.run(2)

    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    header = _read(path)[0]
    assert header == ["epoch", "batch", "running_acc", "running_loss", "acc", "loss", "val_acc", "val_loss"]
    assert all(None not in row for row in rows)  # no row is longer than the header
    batch_rows = [row for row in rows if row["batch"] != ""]
    epoch_rows = [row for row in rows if row["batch"] == ""]
    assert [(int(row["epoch"]), int(row["batch"])) for row in batch_rows] == [
        (e, b) for e in range(2) for b in range(4)
    ]
    assert [float(row["running_loss"]) for row in batch_rows] == pytest.approx(seen_losses)
    assert all(row["val_loss"] == "" for row in batch_rows)
    assert [float(row["val_loss"]) for row in epoch_rows] == pytest.approx([record["val_loss"] for record in history])
    assert [row["epoch"] for row in rows].index("1") == 5  # epoch 0: four batch rows, then its epoch row


def test_separator_is_written_between_fields(tmp_path):
    path = tmp_path / "log.tsv"
    logger = CSVLogger(str(path), separator="\t")
    logger.on_start({})
    logger.on_end_epoch(_epoch_state(0, loss=0.5, acc=0.25))
    logger.on_end({})

    assert path.read_text().splitlines() == ["epoch\tloss\tacc", "0\t0.5\t0.25"]


def test_separator_of_several_characters_is_refused():
    with pytest.raises(ValueError, match="single character"):
        CSVLogger("log.csv", separator=", ")


def test_write_header_false_writes_rows_only(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path), write_header=False)
    logger.on_start({})
    logger.on_end_epoch(_epoch_state(0, loss=0.5))
    logger.on_end_epoch(_epoch_state(1, loss=0.25))
    logger.on_end({})

    assert _read(path) == [["0", "0.5"], ["1", "0.25"]]


def test_each_row_is_on_disk_before_the_run_ends(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path))
    logger.on_start({})
    logger.on_end_epoch(_epoch_state(0, loss=0.5))

    assert _read(path) == [["epoch", "loss"], ["0", "0.5"]]
    logger.on_end({})


def test_a_new_logger_without_append_starts_a_new_file(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n7,0.1\n")
    _trial(classification_data, [CSVLogger(str(path))]).run(1)

    assert [row[0] for row in _read(path)] == ["epoch", "0"]


def test_training_on_and_evaluating_add_to_the_same_log(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    trial = _trial(classification_data, [CSVLogger(str(path))])
    trial.run(1)
    trial.run(3)
    evaluated = trial.evaluate()

    rows = _read(path)
    assert [row[0] for row in rows] == ["epoch", "0", "1", "2", "2"]  # evaluated: the weights after epoch 2
    assert float(rows[-1][rows[0].index("val_acc")]) == pytest.approx(evaluated["val_acc"])


def test_evaluation_rows_are_marked_with_the_data_set_and_training_rows_are_not(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    x, y = classification_data
    trial = _trial(classification_data, [CSVLogger(str(path))])
    trial.with_test_data(x, batch_size=10, num_workers=0)
    trial.evaluate()  # before any training
    trial.run(2)
    trial.predict()  # no targets, so no values: no row
    trial.evaluate(data_key=torchbearer.TRAIN_DATA)
    trial.run(3)

    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["epoch"], row["evaluation"]) for row in rows] == [
        ("-1", "val"), ("0", ""), ("1", ""), ("1", "train"), ("2", ""),
    ]  # fmt: skip
    assert rows[3]["train_acc"] != "" and rows[3]["acc"] == ""


def test_a_resumed_trial_cuts_the_log_back_to_its_checkpoint_and_goes_on(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    trial = _trial(classification_data, [CSVLogger(str(path))])
    trial.run(2)
    checkpoint = trial.state_dict()
    trial.run(4)  # epochs 2 and 3 are logged, then the process "dies"

    resumed = _trial(classification_data, [CSVLogger(str(path))])
    resumed.load_state_dict(checkpoint)
    resumed.run(3)

    assert [row[0] for row in _read(path)] == ["epoch", "0", "1", "2"]


def test_append_adds_rows_under_the_existing_header(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    trial = _trial(classification_data, [CSVLogger(str(path), append=True)])
    trial.run(1)
    trial.run(3)

    rows = _read(path)
    assert [row[0] for row in rows] == ["epoch", "0", "1", "2"]


def test_append_with_new_columns_extends_the_header_and_pads_old_rows(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,0.5\n")
    logger = CSVLogger(str(path), append=True)
    logger.on_start({})
    logger.on_end_epoch(_epoch_state(1, loss=0.25, val_loss=0.75))
    logger.on_end({})

    assert _read(path) == [["epoch", "loss", "val_loss"], ["0", "0.5", ""], ["1", "0.25", "0.75"]]


def test_batch_rows_hold_numbers_read_from_lazy_tensor_metrics(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path), batch_granularity=True)
    logger.on_start({})
    state = {
        torchbearer.EPOCH: 0,
        torchbearer.BATCH: 3,
        torchbearer.METRICS: LazyValues(lambda: {"running_loss": torch.tensor(0.5)}),
    }
    logger.on_step_training(state)
    logger.on_end({})

    assert _read(path) == [["epoch", "batch", "running_loss"], ["0", "3", "0.5"]]


def test_missing_parent_directories_are_created(tmp_path):
    path = tmp_path / "logs" / "run1" / "log.csv"
    logger = CSVLogger(str(path))
    logger.on_start({})
    logger.on_end_epoch(_epoch_state(0, loss=0.5))
    logger.on_end({})

    assert _read(path)[1] == ["0", "0.5"]


def test_file_is_closed_and_rows_kept_when_the_run_fails(classification_data, tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path), batch_granularity=True)

    class FailInSecondEpoch(Callback):
        def on_step_training(self, state):
            if state[torchbearer.EPOCH] == 1 and state[torchbearer.BATCH] == 2:
                raise RuntimeError("boom")

    trial = _trial(classification_data, [logger, FailInSecondEpoch()])
    with pytest.raises(RuntimeError, match="boom"):
        trial.run(2)

    assert logger._file is None
    rows = _read(path)
    assert [(row[0], row[1]) for row in rows[1:]] == [("0", str(b)) for b in range(4)] + [("0", "")] + [
        ("1", "0"),
        ("1", "1"),
        ("1", "2"),
    ]


def test_ranks_other_than_zero_write_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path), batch_granularity=True)
    logger.on_start({})
    logger.on_step_training(
        {torchbearer.EPOCH: 0, torchbearer.BATCH: 0, torchbearer.METRICS: LazyValues(lambda: {"loss": 0.5})}
    )
    logger.on_end_epoch(_epoch_state(0, loss=0.5))
    logger.on_end({})

    assert not path.exists()


@pytest.mark.parametrize("checkpointer_first", [True, False])
def test_a_run_resumed_from_a_batch_checkpoint_keeps_every_batch_row(classification_data, tmp_path, checkpointer_first):
    from torchbearer.callbacks.checkpointers import Interval
    from torchbearer.io import safe_load

    path = tmp_path / "log.csv"

    def callbacks():
        saver = Interval(str(tmp_path / "step{t}.pt"), on_batch=True)
        logger = CSVLogger(str(path), batch_granularity=True)
        return [saver, logger] if checkpointer_first else [logger, saver]

    _trial(classification_data, callbacks()).run(1)  # 4 batches, a checkpoint after each
    resumed = _trial(classification_data, callbacks())
    resumed.load_state_dict(safe_load(tmp_path / "step1.pt"))  # as if the run died after batch 1
    resumed.run(1)

    rows = _read(path)
    batch_column = rows[0].index("batch")
    assert [row[batch_column] for row in rows[1:]] == ["0", "1", "2", "3", ""]  # the last row is the epoch's
