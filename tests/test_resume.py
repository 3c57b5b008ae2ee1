"""Resuming a Trial (``torchbearer.resume``): what its state dict holds and what loading one restores."""

import io
import warnings

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Callback, Trial
from torchbearer.resume import release, warn_if_order_not_reproducible


def _fresh_trial(classification_data, callbacks=()) -> Trial:
    x, y = classification_data
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], list(callbacks), verbose=0)
    trial.with_train_data(x, y, batch_size=6, shuffle=True, num_workers=0)
    trial.with_val_data(x, y, batch_size=10, num_workers=0)
    return trial


def _saved_and_loaded(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)


class _SaveAt(Callback):
    """Keeps the Trial's state dict after training batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch, self.saved = epoch, batch, None

    def on_step_training(self, state):
        if (state[torchbearer.EPOCH], state[torchbearer.BATCH]) == (self.epoch, self.batch):
            self.saved = _saved_and_loaded(state[torchbearer.SELF].state_dict())


def test_state_dict_is_plain_and_loads_with_weights_only(linear_trial, tmp_path):
    linear_trial.run(2)
    path = tmp_path / "trial.pt"
    torch.save(linear_trial.state_dict(), path)
    loaded = torch.load(path)
    assert {"torchbearer_version", "model", "optimizer", "history", "callback_list"} <= set(loaded)
    assert {"metric_list", "rng", "progress"} <= set(loaded)
    assert loaded[torchbearer.MODEL].keys() == linear_trial.state[torchbearer.MODEL].state_dict().keys()


def test_progress_is_the_next_epoch_between_epochs_and_the_batch_inside_one(classification_data):
    saver = _SaveAt(epoch=1, batch=2)
    trial = _fresh_trial(classification_data, [saver])
    assert trial.state_dict()["progress"] == {"epoch": 0, "batch": -1}
    trial.run(2)
    assert trial.state_dict()["progress"] == {"epoch": 2, "batch": -1}
    assert "epoch_start_rng" not in trial.state_dict()
    assert saver.saved["progress"] == {"epoch": 1, "batch": 2} and "epoch_start_rng" in saver.saved


def test_resume_continues_the_epoch_count(linear_trial, classification_data, tmp_path):
    linear_trial.run(2)
    path = tmp_path / "trial.pt"
    torch.save(linear_trial.state_dict(), path)
    x, y = classification_data
    model = nn.Linear(4, 3)
    fresh = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), ["acc", "loss"], verbose=0)
    fresh.with_train_data(x, y, batch_size=10, num_workers=0)
    fresh.load_state_dict(torch.load(path))
    assert torch.equal(model.weight, linear_trial.state[torchbearer.MODEL].weight)
    assert len(fresh.run(4)) == 4


def test_a_run_resumed_mid_epoch_ends_identical_to_one_never_interrupted(classification_data):
    saver = _SaveAt(epoch=1, batch=3)
    reference = _fresh_trial(classification_data, [saver])
    reference_history = reference.run(3)
    torch.manual_seed(123)  # the resumed run must not depend on the random state it starts in
    resumed = _fresh_trial(classification_data)
    resumed.load_state_dict(saver.saved)
    assert resumed.run(3) == reference_history
    for name, value in reference.state[torchbearer.MODEL].state_dict().items():
        assert torch.equal(resumed.state[torchbearer.MODEL].state_dict()[name], value), name


def _assert_same(saved, again, path="state dict"):
    """Equal nested state dicts: the same keys and values, tensors equal element for element."""
    assert type(saved) is type(again), path
    if isinstance(saved, dict):
        assert list(saved) == list(again), path
        for key in saved:
            _assert_same(saved[key], again[key], f"{path}[{key!r}]")
    elif isinstance(saved, (list, tuple)):
        assert len(saved) == len(again), path
        for index, (left, right) in enumerate(zip(saved, again)):
            _assert_same(left, right, f"{path}[{index}]")
    elif isinstance(saved, torch.Tensor):
        assert torch.equal(saved, again), path
    else:
        assert saved == again, path


class _SaveAtEpochEnd(Callback):
    """Keeps the Trial's state dict at the checkpoint of epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.saved = epoch, None

    def on_checkpoint(self, state):
        if state[torchbearer.EPOCH] == self.epoch:
            self.saved = _saved_and_loaded(state[torchbearer.SELF].state_dict())


@pytest.mark.parametrize("new_saver", [lambda: _SaveAt(epoch=1, batch=3), lambda: _SaveAtEpochEnd(epoch=0)],
                         ids=["mid_epoch", "epoch_end"])  # fmt: skip
def test_a_checkpoint_loaded_and_saved_again_is_the_same_checkpoint(classification_data, new_saver):
    saver = new_saver()
    reference_history = _fresh_trial(classification_data, [saver]).run(3)
    torch.manual_seed(123)  # neither saving again nor resuming may depend on the random state here
    loaded = _fresh_trial(classification_data, [new_saver()]).load_state_dict(saver.saved)
    again = _saved_and_loaded(loaded.state_dict())
    _assert_same(saver.saved, again)
    resumed = _fresh_trial(classification_data, [new_saver()]).load_state_dict(again)
    assert resumed.run(3) == reference_history


def test_load_without_resume_loads_the_model_only(linear_trial):
    linear_trial.run(1)
    saved = linear_trial.state_dict()
    other = Trial(nn.Linear(4, 3), verbose=0).load_state_dict(saved, resume=False)
    assert torch.equal(other.state[torchbearer.MODEL].weight, linear_trial.state[torchbearer.MODEL].weight)
    assert other.state[torchbearer.HISTORY] == []


def test_a_state_dict_of_another_version_warns_and_loads_what_it_can(linear_trial):
    linear_trial.run(1)
    saved = {**linear_trial.state_dict(), "torchbearer_version": "0.5.3"}
    other = Trial(nn.Linear(4, 3), verbose=0)
    with pytest.warns(UserWarning, match="different torchbearer version") as caught:
        other.load_state_dict(saved)
    assert caught[0].filename == __file__
    assert len(other.state[torchbearer.HISTORY]) == 1


def test_development_versions_count_as_their_release():
    assert release("1.0.0.dev0") == release("1.0.0.dev") == release("1.0.0") == "1.0.0"
    assert release("0.5.3") == "0.5.3"


def test_load_state_dict_of_bare_model_warns_and_loads():
    source, target = nn.Linear(2, 2), nn.Linear(2, 2)
    trial = Trial(target)
    with pytest.warns(UserWarning, match="Not a torchbearer state dict, passing to model"):
        trial.load_state_dict(source.state_dict())
    assert torch.equal(target.weight, source.weight)


def test_load_state_dict_of_another_model_names_missing_and_unexpected_keys():
    trial = Trial(nn.Linear(2, 2))
    other = nn.Sequential(nn.Linear(2, 2)).state_dict()
    with pytest.warns(UserWarning), pytest.raises(torchbearer.errors.StateDictError, match=r"missing keys \['bias'"):
        trial.load_state_dict(other)


def test_mid_epoch_resume_warns_when_the_loader_order_cannot_be_replayed(classification_data):
    x, _ = classification_data
    with pytest.warns(UserWarning, match="replays the training loader"):
        warn_if_order_not_reproducible(iter([x]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_order_not_reproducible(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4))
