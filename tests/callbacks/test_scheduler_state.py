"""A scheduler's state, turned into what ``torch.load(weights_only=True)`` reads and back."""

import io
from collections import Counter

import numpy as np
import pytest
import torch

from torchbearer.callbacks.scheduler_state import (
    group_hyperparameters,
    like_template,
    restore_hyperparameters,
    to_plain,
)


def test_a_counter_and_numpy_values_survive_a_weights_only_round_trip():
    state = {"milestones": Counter([3, 3, 5]), "gamma": np.float64(0.5), "base_lrs": (0.1, 0.2), "last_epoch": 4}
    buffer = io.BytesIO()
    torch.save(to_plain(state), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)

    restored = like_template(state, loaded)
    assert restored == {"milestones": Counter([3, 3, 5]), "gamma": 0.5, "base_lrs": (0.1, 0.2), "last_epoch": 4}
    assert isinstance(restored["milestones"], Counter) and isinstance(restored["base_lrs"], tuple)


def test_an_unreadable_object_is_left_out_with_a_warning_naming_where_it_was():
    with pytest.warns(UserWarning, match=r"scheduler\['lr_lambdas'\]\[0\] holds a object"):
        plain = to_plain({"lr_lambdas": [object()], "last_epoch": 1})
    assert plain == {"lr_lambdas": [], "last_epoch": 1}


def test_group_settings_come_back_with_the_schedulers_lr_and_tensor_settings_keep_their_identity():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=torch.tensor(0.1), weight_decay=0.01)
    lr_tensor = optimizer.param_groups[0]["lr"]
    saved = group_hyperparameters(optimizer)
    optimizer.param_groups[0]["weight_decay"] = 0.5
    lr_tensor.fill_(0.9)

    restore_hyperparameters(optimizer, saved, [0.05])
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == 0.01
    assert group["lr"] is lr_tensor and float(lr_tensor) == pytest.approx(0.05)
