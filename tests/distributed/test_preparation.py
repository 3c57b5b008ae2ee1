"""``torchbearer.distributed.preparation``: a Trial outside ``torchrun`` is not touched by ``prepare``."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import distributed
from torchbearer.distributed import DISTRIBUTED, PER_RANK_KEY


def test_a_single_process_trial_is_left_exactly_as_it_was(classification_data):
    x, y = classification_data
    model = torch.nn.Linear(4, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = torchbearer.Trial(model, optimizer, torch.nn.CrossEntropyLoss(), verbose=0)
    trial.with_distributed(strategy="fsdp").with_generators(loader, loader, loader).run(1)
    assert trial.state[torchbearer.MODEL] is model
    assert trial.state[torchbearer.TRAIN_GENERATOR] is loader and trial.state[torchbearer.TEST_GENERATOR] is loader
    assert not trial.state[DISTRIBUTED].active
    assert PER_RANK_KEY not in trial.state_dict()
    assert distributed.is_rank_zero() and distributed.get_world_size() == 1
