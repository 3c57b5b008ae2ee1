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
    assert "Trial/raw ratio of each side's fastest 10% of epochs:" in output


def test_the_fastest_epochs_ratio_ignores_epochs_slowed_by_the_machine():
    overhead = _benchmark_module()
    raw = [1.0, 1.0, 5.0, 1.1, 1.0, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    trial = [1.02 * time for time in sorted(raw)[:15]] + [9.0, 3.0, 2.0, 7.0, 4.0]
    assert overhead.fastest_ratio(raw, trial) == pytest.approx(1.02)
    assert overhead.fastest_ratio([2.0], [3.0]) == pytest.approx(1.5)


def test_the_instruction_count_is_read_from_callgrinds_exit_report():
    overhead = _benchmark_module()
    log = "==4242== Events    : Ir\n==4242== Collected : 1253237067\n==4242==\n==4242== I   refs:      1,253,237,067\n"
    assert overhead.collected_instructions(log) == 1_253_237_067
    with pytest.raises(RuntimeError, match="no instruction count"):
        overhead.collected_instructions("==4242== Memcheck, a memory error detector\n")


def test_counting_instructions_without_valgrind_says_what_to_install(tmp_path):
    command = [sys.executable, str(BENCHMARK), "--workload", "cnn", "--instructions"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={"PATH": str(tmp_path)})
    assert result.returncode != 0
    assert "--instructions needs valgrind" in result.stderr
