"""A killed worker costs a restart, not the job; SIGTERM checkpoints every rank at one step and exits.

``elastic_script.py`` is the recipe of ``docs/scaling-out.md``: ``Interval(path, period=4, on_batch=True)``,
``with_preemption(path)``, and the checkpoint loaded if it exists. It trains 18 steps (6 per epoch) on 2
processes, with dropout and shuffled loaders. Every faulty run must end bit-identical to the run without
faults.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from launch import HERE, torchrun_elastic

from torchbearer.distributed import PREEMPTED_EXIT_CODE
from torchbearer.io import safe_load

SCRIPT = os.path.join(HERE, "elastic_script.py")


def _run(out, *arguments: str, max_restarts: int = 1):
    return torchrun_elastic(SCRIPT, ["--out", str(out), *arguments], max_restarts=max_restarts, timeout=180)


def _output(completed) -> str:
    return completed.stdout[-3000:] + completed.stderr[-3000:]


def _assert_identical(final: dict, reference: dict) -> None:
    assert final["history"] == reference["history"]
    for name, value in reference["model"].items():
        assert torch.equal(final["model"][name], value), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("no_fault")
    completed = _run(out, max_restarts=0)
    assert completed.returncode == 0, _output(completed)
    return torch.load(out / "final.pt")


def test_a_worker_killed_at_an_epoch_end_right_after_a_checkpoint_costs_one_restart(reference, tmp_path):
    completed = _run(tmp_path, "--kill-at", "12")
    assert completed.returncode == 0, _output(completed)
    final = torch.load(tmp_path / "final.pt")
    assert final["restarts"] == 1
    _assert_identical(final, reference)


def test_a_worker_killed_between_checkpoints_then_sigterm_to_torchrun_then_a_new_launch_finish_the_run(
    reference, tmp_path
):
    # Killed after step 7 (checkpoints after 4 and 8): torchrun restarts both workers from step 4.
    # At step 14 of the restarted group, torchrun gets SIGTERM (a cluster preempting the job).
    first = _run(tmp_path, "--kill-at", "7", "--term-at", "14")
    assert first.returncode != 0
    assert "got signal: 15" in first.stdout + first.stderr, _output(first)
    stops = [json.loads((tmp_path / f"preempted{rank}.json").read_text()) for rank in range(2)]
    assert stops[0] == stops[1]  # both ranks stopped at the same step
    assert stops[0]["code"] == PREEMPTED_EXIT_CODE and stops[0]["restarts"] == 1
    epoch, batch = stops[0]["progress"]["epoch"], stops[0]["progress"]["batch"]
    assert 14 <= epoch * 6 + batch + 1 < 18  # after the step the signal was sent at, before the end
    # The checkpoint is complete, from that step, with every rank's own state.
    checkpoint = safe_load(tmp_path / "checkpoint.pt")
    assert checkpoint["progress"] == stops[0]["progress"] and len(checkpoint["per_rank"]) == 2

    second = _run(tmp_path)  # the job started again, as a scheduler would after preemption
    assert second.returncode == 0, _output(second)
    final = torch.load(tmp_path / "final.pt")
    assert final["restarts"] == 0
    for name, value in reference["model"].items():
        assert torch.equal(final["model"][name], value), name
    # A checkpoint in the middle of a pass flushes the metrics' grouped sums early, so an epoch mean may
    # differ from the uninterrupted run's in its last bit (the weights are bit-identical).
    for resumed, uninterrupted in zip(final["history"], reference["history"]):
        assert resumed == pytest.approx(uninterrupted, rel=1e-6)
