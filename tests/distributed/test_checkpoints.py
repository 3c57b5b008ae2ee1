"""``torchbearer.distributed.checkpoints`` in one process: per-rank state, state dicts, saving and loading."""

from __future__ import annotations

import os

import torch
from torch import nn

import torchbearer
from torchbearer.distributed import PER_RANK_KEY, checkpoints, own_state


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
