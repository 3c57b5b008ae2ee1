"""The overhead benchmark compares like with like: its raw loop reports what Trial reports."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sklearn")
BENCHMARK = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("overhead", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_raw_loop_computes_the_same_history_values_as_trial():
    overhead = _benchmark_module()
    torch.set_num_threads(1)
    raw = overhead.RawLoop("cnn", "cpu", progress=False).epoch()
    trial = overhead.TrialLoop("cnn", "cpu", progress=False).epoch()
    for key, value in raw.items():
        assert trial[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_the_benchmark_prints_its_table():
    command = [sys.executable, str(BENCHMARK), "--workload", "cnn", "--pairs", "2", "--warmup", "0"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout
    assert "| Trial |" in output and "Trial/raw ratio: median" in output
