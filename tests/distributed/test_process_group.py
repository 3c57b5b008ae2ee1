"""``torchbearer.distributed.process_group`` without a group: torchrun detection, ranks and stop agreement."""

from __future__ import annotations

import pytest

import torchbearer
from torchbearer import distributed
from torchbearer.distributed import DistributedSettings
from torchbearer.distributed.process_group import wanted_world_size

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture
def outside_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_torchrun_is_detected_from_its_environment_variables(outside_torchrun):
    assert distributed.launch_environment() is None
    outside_torchrun.setenv("RANK", "3")
    outside_torchrun.setenv("WORLD_SIZE", "4")
    assert distributed.launch_environment() == (3, 4, 0)
    outside_torchrun.setenv("LOCAL_RANK", "1")
    assert distributed.launch_environment() == (3, 4, 1)


def test_without_a_group_this_process_is_rank_zero_of_one():
    assert not distributed.is_initialized()
    assert (distributed.get_rank(), distributed.get_world_size(), distributed.is_rank_zero()) == (0, 1, True)


def test_the_world_size_comes_from_torchrun_unless_distribution_is_switched_off(outside_torchrun):
    assert wanted_world_size(DistributedSettings()) == 1
    outside_torchrun.setenv("RANK", "0")
    outside_torchrun.setenv("WORLD_SIZE", "4")
    assert wanted_world_size(DistributedSettings()) == 4
    assert wanted_world_size(DistributedSettings(enabled=False)) == 1


@pytest.mark.parametrize("flag", [False, True])
def test_a_single_process_agrees_with_its_own_stop_flag(flag):
    state = {torchbearer.STOP_TRAINING: flag}
    assert distributed.stop_agreement(state) is None
    assert distributed.agree_to_stop(state) is flag


def test_barrier_returns_at_once_without_a_distributed_trial():
    distributed.barrier({})
    distributed.barrier({distributed.DISTRIBUTED: DistributedSettings()})
