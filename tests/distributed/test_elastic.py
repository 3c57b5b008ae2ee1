"""A killed worker costs a restart, not the job; SIGTERM checkpoints every rank at one step and exits.

``elastic_script.py`` is the recipe of ``docs/scaling-out.md``: ``Interval(path, period=4, on_batch=True)``,
``with_preemption(path)``, and the checkpoint loaded if it exists. It trains 18 steps (6 per epoch) on 2
processes, with dropout and shuffled loaders. Every faulty run must end bit-identical to the run without
faults. A scenario in which a worker aborted inside PyTorch's C++ runtime (see ``launch.ABORTED``) runs
once more in a new folder.
"""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from launch import ABORTED, HERE, torchrun_elastic

from torchbearer.distributed import PREEMPTED_EXIT_CODE
from torchbearer.io import safe_load

SCRIPT = os.path.join(HERE, "elastic_script.py")


class _WorkerAborted(Exception):
    """A launch failed because a worker aborted in PyTorch's runtime, not because of the fault injected."""


def _run(out, *arguments: str, max_restarts: int = 1):
    out.mkdir(parents=True, exist_ok=True)
    completed = torchrun_elastic(SCRIPT, ["--out", str(out), *arguments], max_restarts=max_restarts, timeout=180)
    if completed.returncode != 0 and ABORTED in completed.stdout + completed.stderr:
        raise _WorkerAborted(_output(completed))
    return completed


def _once_more_if_aborted(scenario, folder):
    try:
        return scenario(folder / "first")
    except _WorkerAborted as aborted:
        message = f"a torchrun worker aborted; the scenario runs once more. Its output ends:\n{aborted}"
        warnings.warn(message, stacklevel=2)
        return scenario(folder / "second")


def _output(completed) -> str:
    return completed.stdout[-3000:] + completed.stderr[-3000:]


def _assert_same_weights(final: dict, reference: dict) -> None:
    for name, value in reference["model"].items():
        assert torch.equal(final["model"][name], value), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    def without_fault(out):
        completed = _run(out, max_restarts=0)
        assert completed.returncode == 0, _output(completed)
        return torch.load(out / "final.pt")

    return _once_more_if_aborted(without_fault, tmp_path_factory.mktemp("no_fault"))


def test_a_worker_killed_at_an_epoch_end_right_after_a_checkpoint_costs_one_restart(reference, tmp_path):
    def killed_after_step_12(out):  # the checkpoint after step 12 is the last batch of epoch 2
        completed = _run(out, "--kill-at", "12")
        assert completed.returncode == 0, _output(completed)
        return torch.load(out / "final.pt")

    final = _once_more_if_aborted(killed_after_step_12, tmp_path)
    assert final["restarts"] == 1
    assert final["history"] == reference["history"]
    _assert_same_weights(final, reference)


def test_a_worker_killed_between_checkpoints_then_sigterm_to_torchrun_then_a_new_launch_finish_the_run(
    reference, tmp_path
):
    def killed_then_preempted(out):
        # Killed after step 7 (checkpoints after 4 and 8): torchrun restarts both workers from step 4.
        # After step 14 of the restarted group, torchrun gets SIGTERM (a cluster preempting the job).
        first = _run(out, "--kill-at", "7", "--term-at", "14")
        assert first.returncode != 0 and "got signal: 15" in first.stdout + first.stderr, _output(first)
        stops = [json.loads((out / f"preempted{rank}.json").read_text()) for rank in range(2)]
        checkpoint = safe_load(out / "checkpoint.pt")
        second = _run(out)  # the job started again, as a scheduler would after preemption
        assert second.returncode == 0, _output(second)
        return stops, checkpoint, torch.load(out / "final.pt")

    stops, checkpoint, final = _once_more_if_aborted(killed_then_preempted, tmp_path)
    assert stops[0] == stops[1]  # both ranks stopped at the same step
    assert stops[0]["code"] == PREEMPTED_EXIT_CODE and stops[0]["restarts"] == 1
    epoch, batch = stops[0]["progress"]["epoch"], stops[0]["progress"]["batch"]
    assert 14 <= epoch * 6 + batch + 1 < 18  # after the step the signal was sent at, before the end
    # The checkpoint is complete, from that step, with every rank's own state.
    assert checkpoint["progress"] == stops[0]["progress"] and len(checkpoint["per_rank"]) == 2
    assert final["restarts"] == 0
    _assert_same_weights(final, reference)
    # A checkpoint in the middle of a pass flushes the metrics' grouped sums early, so an epoch mean may
    # differ from the uninterrupted run's in its last bit (the weights are bit-identical).
    assert len(final["history"]) == len(reference["history"]) == 3
    for resumed, uninterrupted in zip(final["history"], reference["history"]):
        assert resumed == pytest.approx(uninterrupted, rel=1e-6)
