"""A run killed with SIGKILL and started again ends bit-identical to a run never interrupted."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

DRIVER = Path(__file__).with_name("resume_driver.py")
KILL_POINTS = [3, 8, 12, 17, 22]  # training batches before the kill (8 per epoch); mid-epoch and near ends


def _run_driver(tmp_path, mode):
    subprocess.run([sys.executable, str(DRIVER), str(tmp_path), mode, *map(str, KILL_POINTS)], check=True, timeout=240)
    return torch.load(tmp_path / "reference.pt")


def _assert_identical(result, reference):
    assert result["history"] == reference["history"]
    for key, value in reference["model"].items():
        assert torch.equal(result["model"][key], value), key


@pytest.mark.parametrize("mode", ["epoch", "batch"])
def test_killed_run_resumes_to_the_same_weights_and_history(tmp_path, mode):
    reference = _run_driver(tmp_path, mode)
    assert len(reference["history"]) == 3 and "running_loss" in reference["history"][0]
    for kill_at in KILL_POINTS:
        _assert_identical(torch.load(tmp_path / f"kill{kill_at}.pt"), reference)
