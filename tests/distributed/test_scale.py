"""Shuffled training on 1, 2 and 3 processes equals one process; sharded checkpoints move between world sizes.

One launch per world size (``scale_script.py``), in this order: 2 processes train, and write an FSDP
sharded checkpoint in the background; 3 processes load it, train on, and are killed while a background
save is in flight; ``torchrun --nproc_per_node=1`` then loads what that crash left. The reference is the
same parity script run in this process (plain ``python``) with the global batch of 12.
"""

from __future__ import annotations

import json
import os

import pytest
import scale_script
import torch
import trial_script
from launch import HERE, torchrun
from torch import nn

import torchbearer
from torchbearer.distributed import CURRENT_FILE, load_checkpoint

SCRIPT = os.path.join(HERE, "scale_script.py")


def _parity_arguments(world: int) -> list[str]:
    batch = str(scale_script.GLOBAL_BATCH // world)
    return ["--batch-size", batch, "--train-size", str(scale_script.TRAIN_SIZE), "--shuffle"]


def _max_difference(first: dict, second: dict) -> float:
    return max((first[key] - second[key]).abs().max().item() for key in first)


def _rank_results(folder) -> list[dict]:
    names = sorted(name for name in os.listdir(folder) if name.startswith("rank") and name.endswith(".json"))
    return [json.loads((folder / name).read_text()) for name in names]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Plain ``python``, one process, global batch 12: history and final weights."""
    folder = tmp_path_factory.mktemp("shuffled_one_process")
    trial_script.main(["--out", str(folder), *_parity_arguments(1)])
    return _rank_results(folder)[0]["main"], torch.load(folder / "weights.pt")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tmp_path_factory.mktemp("sharded") / "checkpoint"


def _launch(tmp_path_factory, world: int, *arguments: str):
    out = tmp_path_factory.mktemp(f"world{world}")
    completed = torchrun(world, ["--out", str(out), *arguments], timeout=180, script=SCRIPT)
    return out, completed


@pytest.fixture(scope="module")
def two(tmp_path_factory, checkpoint):
    out, completed = _launch(tmp_path_factory, 2, "--write", str(checkpoint))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def three(tmp_path_factory, checkpoint, two):
    out, completed = _launch(tmp_path_factory, 3, "--load", str(checkpoint), "--crash-during-save")
    return out, completed


@pytest.fixture(scope="module")
def one(tmp_path_factory, checkpoint, three):
    """``torchrun --nproc_per_node=1``, loading the checkpoint after the crash of ``three``."""
    out, completed = _launch(tmp_path_factory, 1, "--load", str(checkpoint))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out


def test_shuffled_training_on_1_2_and_3_processes_reaches_the_weights_of_one_process(reference, one, two, three):
    for world, out in ((1, one), (2, two), (3, three[0])):
        results = _rank_results(out / "parity")
        assert [result["world_size"] for result in results] == [world] * world
        assert _max_difference(reference[1], torch.load(out / "parity" / "weights.pt")) < 1e-5, world


def test_shuffled_validation_on_13_samples_gives_every_rank_the_metrics_of_one_process(reference, one, two, three):
    expected = reference[0]["history"]
    for out in (one, two, three[0]):
        for result in _rank_results(out / "parity"):
            history = result["main"]["history"]
            assert len(history) == len(expected) == 3
            for one_process, distributed in zip(expected, history):
                names = [name for name in one_process if name.startswith("val_")]
                assert distributed["val_acc"] == one_process["val_acc"]
                for name in names:
                    assert distributed[name] == pytest.approx(one_process[name], abs=1e-6), name


def test_a_background_save_lets_training_go_on_and_the_next_save_waits_for_it(two):
    timeline = json.loads((two / "timeline.json").read_text())
    times = {}
    for what, seconds in timeline:
        times.setdefault(what, []).append(seconds)
    first_returned, first_written = times["save_returned"][0], times["write_end"][0]
    assert first_returned < first_written  # the save call did not wait for the write
    assert any(first_returned < step < first_written for step in times["step"])  # training went on meanwhile
    assert times["write_start"][1] >= first_written  # the second save started writing after the first ended
    assert times["save_returned"][1] >= first_written


def test_a_checkpoint_written_by_2_processes_trains_on_with_1_2_or_3(reference, one, two, three):
    for world, out in ((1, one), (2, two), (3, three[0])):
        continued = torch.load(out / f"continued{world}.pt")
        assert len(continued["history"]) == 3
        assert _max_difference(reference[1], continued["model"]) < 1e-5, world


def test_a_crash_during_a_background_save_leaves_the_previous_checkpoint_in_place(checkpoint, three):
    out, completed = three
    assert completed.returncode != 0
    assert "Signal 9 (SIGKILL)" in completed.stdout + completed.stderr
    assert sorted(name for name in os.listdir(out) if name.startswith("crash_save_returned")) == [
        "crash_save_returned0", "crash_save_returned1", "crash_save_returned2",
    ]  # fmt: skip
    current = (checkpoint / CURRENT_FILE).read_text()
    versions = sorted(entry.name for entry in checkpoint.iterdir() if entry.is_dir())
    assert len(versions) == 2 and current in versions
    assert (checkpoint / current / ".metadata").exists()  # complete: the interrupted version has no metadata
    model, optimizer = trial_script.model_and_optimizer()
    trial = torchbearer.Trial(model, optimizer, nn.CrossEntropyLoss(), verbose=0)
    load_checkpoint(trial, str(checkpoint))
    assert len(trial.state[torchbearer.HISTORY]) == 2  # the checkpoint of epoch 2, not the crashed save of epoch 3
