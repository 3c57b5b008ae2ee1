"""Checkpointers: file names, which files exist after each epoch, what they contain, and resuming."""

import os
import warnings

import pytest
import torch

import torchbearer
from torchbearer.callbacks.checkpointers import Best, Interval, ModelCheckpoint, MostRecent
from torchbearer.io import safe_load


def _state(model, epoch, **metrics):
    return {torchbearer.MODEL: model, torchbearer.EPOCH: epoch, torchbearer.METRICS: dict(metrics)}


def _files(folder):
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _feed_epochs(checkpointer, model, values, monitor="val_loss"):
    """Drive ``on_checkpoint`` once per epoch with the given monitored values."""
    for epoch, value in enumerate(values):
        checkpointer.on_checkpoint(_state(model, epoch, **{monitor: value}))


def _trial(callbacks, x, y, lr=0.1, validation=True):
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=lr), torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        callbacks=callbacks, verbose=0,
    )  # fmt: skip
    trial.with_train_data(x, y, batch_size=10, num_workers=0, shuffle=False)
    if validation:
        trial.with_val_data(x, y, batch_size=10, num_workers=0, shuffle=False)
    return trial


# ------------------------------------------------------------------------------------------- file names


def test_file_name_is_filled_from_epoch_and_metrics_and_folder_is_created(tmp_path):
    folder = tmp_path / "checkpoints"
    checkpointer = Interval(str(folder / "model.{epoch:02d}-{val_loss:.2f}.pt"), save_model_params_only=True)
    assert folder.is_dir()  # created at construction
    checkpointer.on_checkpoint(_state(torch.nn.Linear(2, 1), 3, val_loss=0.4242))
    assert _files(folder) == ["model.03-0.42.pt"]
    assert checkpointer.most_recent == str(folder / "model.03-0.42.pt")


def test_metrics_win_over_state_keys_on_a_name_clash(tmp_path):
    checkpointer = Interval(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True)
    state = {torchbearer.MODEL: torch.nn.Linear(2, 1), torchbearer.EPOCH: 3, torchbearer.METRICS: {"epoch": 7}}
    checkpointer.on_checkpoint(state)
    assert _files(tmp_path) == ["model.7.pt"]


def test_folder_named_by_fields_is_created_when_saving(tmp_path):
    checkpointer = Interval(str(tmp_path / "epoch{epoch}" / "model.pt"), save_model_params_only=True)
    checkpointer.on_checkpoint(_state(torch.nn.Linear(2, 1), 2))
    assert (tmp_path / "epoch2" / "model.pt").is_file()


def test_missing_metric_raises_key_error_naming_it_and_the_available_fields(tmp_path):
    checkpointer = Interval(str(tmp_path / "model.{epoch:02d}-{val_loss:.2f}.pt"), save_model_params_only=True)
    with pytest.raises(KeyError, match="val_loss") as raised:
        checkpointer.on_checkpoint(_state(torch.nn.Linear(2, 1), 0, loss=0.3))
    assert "'loss'" in str(raised.value) and "'epoch'" in str(raised.value)
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------------------- content


def test_model_params_only_file_loads_into_a_bare_module(tmp_path):
    model = torch.nn.Linear(3, 2)
    Interval(str(tmp_path / "weights.pt"), save_model_params_only=True).on_checkpoint(_state(model, 0))
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(torch.load(tmp_path / "weights.pt"))
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)


def test_full_checkpoint_is_the_trial_state_dict_and_resumes_epoch_counting(tmp_path, classification_data):
    x, y = classification_data
    pattern = str(tmp_path / "model.{epoch:02d}-{val_loss:.2f}.pt")
    trial = _trial([Interval(pattern)], x, y)
    trial.run(2)
    files = _files(tmp_path)
    assert len(files) == 2 and files[0].startswith("model.00-") and files[1].startswith("model.01-")

    checkpoint = torch.load(tmp_path / files[1])  # weights_only=True by default
    assert set(checkpoint) >= {"model", "optimizer", "history", "callback_list"}
    resumed = _trial([Interval(pattern)], x, y)
    resumed.load_state_dict(safe_load(tmp_path / files[1]))
    assert torch.equal(resumed.state[torchbearer.MODEL].weight, trial.state[torchbearer.MODEL].weight)
    history = resumed.run(3)
    assert len(history) == 3
    assert [name[:8] for name in _files(tmp_path)] == ["model.00", "model.01", "model.02"]


def test_checkpoint_folder_holds_no_temporary_files_after_a_run(tmp_path, classification_data):
    x, y = classification_data
    _trial([MostRecent(str(tmp_path / "latest.pt"))], x, y).run(2)
    assert os.listdir(tmp_path) == ["latest.pt"]


# ------------------------------------------------------------------------------------------- Best


def test_best_keeps_lowest_val_loss(tmp_path):
    best = Best(str(tmp_path / "model.{epoch:02d}-{val_loss:.2f}.pt"), save_model_params_only=True)
    best.on_start({})
    _feed_epochs(best, torch.nn.Linear(2, 1), [0.5, 0.3, 0.4, 0.2, 0.25])
    assert _files(tmp_path) == ["model.03-0.20.pt"]
    assert best.best == 0.2


def test_best_with_acc_monitor_keeps_highest_value(tmp_path):
    best = Best(str(tmp_path / "model.{epoch}-{val_acc}.pt"), save_model_params_only=True, monitor="val_acc")
    assert best.mode == "max"
    best.on_start({})
    _feed_epochs(best, torch.nn.Linear(2, 1), [0.5, 0.7, 0.6, 0.65], monitor="val_acc")
    assert _files(tmp_path) == ["model.1-0.7.pt"]


def test_best_explicit_max_mode_on_a_loss_keeps_highest(tmp_path):
    best = Best(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True, mode="max")
    best.on_start({})
    _feed_epochs(best, torch.nn.Linear(2, 1), [0.5, 0.9, 0.6])
    assert _files(tmp_path) == ["model.1.pt"]


def test_best_ignores_improvements_not_larger_than_min_delta(tmp_path):
    best = Best(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True, min_delta=0.1)
    best.on_start({})
    _feed_epochs(best, torch.nn.Linear(2, 1), [1.0, 0.95, 0.85, 0.5])
    assert _files(tmp_path) == ["model.3.pt"]
    assert best.best == 0.5


def test_best_checks_only_every_period_epochs(tmp_path):
    best = Best(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True, period=2)
    best.on_start({})
    saved = []
    for epoch, value in enumerate([0.1, 0.9, 0.8, 0.7, 0.05, 0.6]):
        best.on_checkpoint(_state(torch.nn.Linear(2, 1), epoch, val_loss=value))
        saved.append(best.most_recent)
    # epochs 1, 3, 5 are checked: 0.9 (saved), 0.7 (better), 0.6 (better); 0.1 and 0.05 are never looked at
    assert [None if path is None else os.path.basename(path) for path in saved] == [
        None, "model.1.pt", "model.1.pt", "model.3.pt", "model.3.pt", "model.5.pt",
    ]  # fmt: skip


def test_best_skips_and_warns_when_the_metric_is_missing(tmp_path):
    best = Best(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True)
    best.on_start({})
    with pytest.warns(UserWarning, match="Best Checkpoint: Failed to retrieve key `val_loss`"):
        best.on_checkpoint(_state(torch.nn.Linear(2, 1), 0, loss=0.3))
    assert _files(tmp_path) == []


def test_best_state_survives_state_dict_so_a_resume_keeps_the_better_file(tmp_path):
    pattern = str(tmp_path / "model.{epoch}-{val_loss}.pt")
    model = torch.nn.Linear(2, 1)
    first = Best(pattern, save_model_params_only=True)
    first.on_start({})
    _feed_epochs(first, model, [0.5, 0.2])
    torch.save(first.state_dict(), tmp_path / "callback_state.pt")
    saved_state = torch.load(tmp_path / "callback_state.pt")  # plain types: weights_only loads it
    assert saved_state == {"epochs": 0, "best": 0.2, "most_recent": str(tmp_path / "model.1-0.2.pt")}

    resumed = Best(pattern, save_model_params_only=True).load_state_dict(saved_state)
    resumed.on_start({})
    resumed.on_checkpoint(_state(model, 2, val_loss=0.3))
    assert _files(tmp_path) == ["callback_state.pt", "model.1-0.2.pt"]
    resumed.on_checkpoint(_state(model, 3, val_loss=0.1))
    assert _files(tmp_path) == ["callback_state.pt", "model.3-0.1.pt"]  # the earlier best file was replaced


def test_best_in_a_trial_resumed_from_a_checkpoint_keeps_its_best(tmp_path, classification_data):
    x, y = classification_data
    pattern = str(tmp_path / "best.pt")
    best = Best(pattern)
    _trial([best], x, y).run(2)
    resumed_best = Best(pattern)
    _trial([resumed_best], x, y).load_state_dict(torch.load(pattern))
    assert resumed_best.best == best.best != float("inf")
    assert resumed_best.most_recent == pattern


# ------------------------------------------------------------------------------------------- MostRecent


def test_most_recent_leaves_only_the_latest_file(tmp_path):
    recent = MostRecent(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True)
    model = torch.nn.Linear(2, 1)
    for epoch in range(3):
        recent.on_checkpoint(_state(model, epoch))
        assert _files(tmp_path) == [f"model.{epoch}.pt"]


def test_most_recent_resumed_from_its_state_deletes_the_file_of_the_earlier_run(tmp_path):
    model = torch.nn.Linear(2, 1)
    first = MostRecent(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True)
    first.on_checkpoint(_state(model, 0))
    resumed = MostRecent(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True)
    resumed.load_state_dict(first.state_dict())
    resumed.on_checkpoint(_state(model, 1))
    assert _files(tmp_path) == ["model.1.pt"]


def test_failing_to_delete_the_old_file_warns(tmp_path):
    recent = MostRecent(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True)
    model = torch.nn.Linear(2, 1)
    recent.on_checkpoint(_state(model, 0))
    os.remove(tmp_path / "model.0.pt")  # as a second checkpointer with the same name would
    with pytest.warns(UserWarning, match="Failed to delete old file. Are you running two checkpointers"):
        recent.on_checkpoint(_state(model, 1))
    assert _files(tmp_path) == ["model.1.pt"]


def test_most_recent_in_a_trial_with_a_fixed_name_keeps_the_last_epoch(tmp_path, classification_data):
    x, y = classification_data
    trial = _trial([MostRecent(str(tmp_path / "latest.pt"))], x, y)
    trial.run(3)
    assert len(torch.load(tmp_path / "latest.pt")["history"]) == 3


# ------------------------------------------------------------------------------------------- Interval


def test_interval_saves_every_period_epochs_and_keeps_all_files(tmp_path):
    interval = Interval(str(tmp_path / "model.{epoch}.pt"), save_model_params_only=True, period=2)
    model = torch.nn.Linear(2, 1)
    for epoch in range(6):
        interval.on_checkpoint(_state(model, epoch))
    assert _files(tmp_path) == ["model.1.pt", "model.3.pt", "model.5.pt"]


def test_interval_on_batch_saves_every_k_training_steps(tmp_path, classification_data):
    x, y = classification_data  # 40 samples, batch 10: 4 steps per epoch
    interval = Interval(str(tmp_path / "model.{epoch}-{t}.pt"), period=3, on_batch=True)
    trial = _trial([interval], x, y, validation=False)
    trial.run(2)
    # global steps 3 and 6 of 8: (epoch 0, batch 2) and (epoch 1, batch 1); nothing at epoch ends
    assert _files(tmp_path) == ["model.0-2.pt", "model.1-1.pt"]
    assert interval.state_dict()["epochs"] == 2


def test_interval_on_batch_file_name_may_use_running_metrics(tmp_path, classification_data):
    x, y = classification_data
    interval = Interval(str(tmp_path / "model.{t}-{running_loss:.3f}.pt"), period=4, on_batch=True)
    _trial([interval], x, y, validation=False).run(1)
    (name,) = _files(tmp_path)
    assert name.startswith("model.3-") and float(name[len("model.3-") : -len(".pt")]) > 0


# ------------------------------------------------------------------------------------------- ModelCheckpoint


def test_model_checkpoint_makes_best_when_save_best_only(tmp_path):
    path = str(tmp_path / "m.pt")
    checkpoint = ModelCheckpoint(path, True, "val_acc", save_best_only=True, mode="auto", period=3, min_delta=0.5)
    assert isinstance(checkpoint, Best)
    assert (checkpoint.filepath, checkpoint.save_model_params_only, checkpoint.monitor) == (path, True, "val_acc")
    assert (checkpoint.mode, checkpoint.period, checkpoint.min_delta) == ("max", 3, 0.5)


def test_model_checkpoint_makes_interval_by_default(tmp_path):
    checkpoint = ModelCheckpoint(str(tmp_path / "m.pt"), period=4)
    assert isinstance(checkpoint, Interval)
    assert (checkpoint.period, checkpoint.save_model_params_only, checkpoint.on_batch) == (4, False, False)


def test_default_pattern_names_files_by_epoch_and_val_loss_in_a_trial(tmp_path, classification_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = classification_data
    trial = _trial([ModelCheckpoint()], x, y)
    history = trial.run(1)
    assert _files(tmp_path) == [f"model.00-{history[0]['val_loss']:.2f}.pt"]


# ------------------------------------------------------------------------------------------- resuming from a file


def _set_val_acc(values):
    """A callback that sets this epoch's val_acc from ``values``, so that the best epoch is known."""

    @torchbearer.callbacks.on_end_epoch
    def set_val_acc(state):
        state[torchbearer.METRICS]["val_acc"] = values[state[torchbearer.EPOCH]]

    return set_val_acc


def test_a_checkpoint_holds_the_other_checkpointers_decisions_for_its_own_epoch(tmp_path, classification_data):
    x, y = classification_data
    val_acc = [0.5, 0.9, 0.7, 0.6]  # epoch 1 is the best
    latest, best_file = str(tmp_path / "latest.pt"), str(tmp_path / "best.pt")

    def callbacks():
        return [
            _set_val_acc(val_acc),
            MostRecent(latest),
            Best(best_file, save_model_params_only=True, monitor="val_acc"),
        ]

    first = _trial(callbacks(), x, y)
    first.run(2)
    weights_of_the_best_epoch = torch.load(best_file)
    saved = torch.load(latest)
    assert saved["callback_list"]["callback_states"][2]["best"] == 0.9  # Best decided on epoch 1 before the save

    resumed = _trial(callbacks(), x, y)
    resumed.load_state_dict(saved)
    resumed.run(4)  # epochs 2 and 3 are worse than epoch 1
    assert all(torch.equal(value, weights_of_the_best_epoch[key]) for key, value in torch.load(best_file).items())


def test_an_interval_resumed_from_another_checkpointers_file_keeps_its_period(tmp_path, classification_data):
    x, y = classification_data

    def callbacks():
        return [MostRecent(str(tmp_path / "latest.pt")), Interval(str(tmp_path / "every2.{epoch}.pt"), period=2)]

    _trial(callbacks(), x, y).run(2)
    resumed = _trial(callbacks(), x, y)
    resumed.load_state_dict(torch.load(tmp_path / "latest.pt"))
    resumed.run(6)
    assert _files(tmp_path) == ["every2.1.pt", "every2.3.pt", "every2.5.pt", "latest.pt"]  # as in a straight run


def test_a_checkpoint_names_itself_so_a_resumed_run_replaces_it(tmp_path, classification_data):
    x, y = classification_data
    pattern = str(tmp_path / "model.{epoch:02d}.pt")
    _trial([MostRecent(pattern)], x, y).run(3)
    resumed = _trial([MostRecent(pattern)], x, y)
    resumed.load_state_dict(torch.load(tmp_path / "model.02.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "failed to delete old file"
        resumed.run(5)
    assert _files(tmp_path) == ["model.04.pt"]
