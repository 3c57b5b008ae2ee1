"""``torchbearer.distributed.checkpoints`` in one process: per-rank state, state dicts, saving and loading."""

from __future__ import annotations

import os
from concurrent.futures import Future

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer.distributed import (
    CURRENT_FILE,
    PER_RANK_KEY,
    DistributedSettings,
    checkpoint_folder,
    checkpoints,
    own_state,
    wait_for_checkpoint,
)


def test_each_rank_restores_its_own_state_and_other_ranks_keep_theirs(monkeypatch):
    per_rank = {PER_RANK_KEY: [{"rank": 0}, {"rank": 1}], "rng": {"rank": 0}}
    assert own_state(per_rank, {"rank": 0}) == {"rank": 0}
    assert own_state({"rng": {"single": True}}, {"single": True}) == {"single": True}
    monkeypatch.setattr(checkpoints, "get_rank", lambda: 1)
    assert own_state(per_rank, {"rank": 0}) == {"rank": 1}
    assert own_state({"rng": {"single": True}}, {"single": True}) is None


def _trial() -> torchbearer.Trial:
    model = nn.Linear(3, 2)
    return torchbearer.Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), verbose=0)


def test_a_single_process_keeps_no_per_rank_states():
    trial = _trial()
    assert checkpoints.per_rank_states(trial.state, {"rng": 1}) == {}


def test_model_state_dict_has_the_plain_model_s_keys_for_a_compiled_model():
    model = nn.Linear(3, 2)
    state = {torchbearer.MODEL: torch.compile(model)}
    assert list(checkpoints.model_state_dict(state)) == list(model.state_dict()) == ["weight", "bias"]


def test_a_checkpoint_saved_in_one_process_loads_into_a_fresh_trial_and_can_be_removed(tmp_path):
    trial, fresh = _trial(), _trial()
    trial.state[torchbearer.HISTORY].append({"loss": 1.0})
    path = str(tmp_path / "model.pt")
    checkpoints.save_checkpoint(trial.state_dict(), path, trial.state)
    assert checkpoints.load_checkpoint(fresh, path) is fresh
    assert torch.equal(fresh.state[torchbearer.MODEL].weight, trial.state[torchbearer.MODEL].weight)
    assert fresh.state[torchbearer.HISTORY] == [{"loss": 1.0}]
    checkpoints.remove_checkpoint(path, trial.state)
    assert not os.path.exists(path)


def test_a_sharded_checkpoint_is_read_from_the_version_that_current_names(tmp_path):
    for version in ("version-old", "version-new"):
        (tmp_path / version).mkdir()
    assert checkpoint_folder(str(tmp_path)) == str(tmp_path)  # no versions: a folder torch wrote directly
    (tmp_path / CURRENT_FILE).write_text("version-old")
    assert checkpoint_folder(str(tmp_path)) == str(tmp_path / "version-old")
    checkpoints._make_current(str(tmp_path), "version-new")
    assert checkpoint_folder(str(tmp_path)) == str(tmp_path / "version-new")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [CURRENT_FILE, "version-new"]


def test_a_background_save_becomes_current_only_when_written_and_its_error_reaches_the_next_wait():
    made_current = []
    written = Future()
    settings = DistributedSettings(pending_save=checkpoints.BackgroundSave(written, lambda: made_current.append(1)))
    assert not settings.pending_save.done() and made_current == []
    written.set_result(None)
    wait_for_checkpoint(settings)
    assert made_current == [1] and settings.pending_save is None

    failed = Future()
    settings.pending_save = checkpoints.BackgroundSave(failed, lambda: made_current.append(2))
    failed.set_exception(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        wait_for_checkpoint({torchbearer.distributed.DISTRIBUTED: settings})
    assert made_current == [1]  # the failed version never became current
