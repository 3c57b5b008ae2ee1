"""The overhead benchmark compares like with like: its raw loop reports what Trial reports."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

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


def test_the_compiled_raw_loop_and_compiled_trial_report_what_the_eager_raw_loop_reports():
    overhead = _benchmark_module()
    torch.set_num_threads(1)
    eager = overhead.RawLoop("cnn", "cpu", progress=False).epoch()
    compiled = overhead.CompiledRawLoop("cnn", "cpu", False, backend="aot_eager").epoch()
    trial = overhead.TrialLoop("cnn", "cpu", False, compile_kwargs={"backend": "aot_eager"}).epoch()
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        assert trial[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_the_raw_loop_pauses_after_every_batch_and_reports_the_same_history_either_way():
    overhead = _benchmark_module()
    torch.set_num_threads(1)
    whole, paused = _unshuffled(overhead.RawLoop("cnn", "cpu", False), overhead.RawLoop("cnn", "cpu", False))
    pauses = sum(1 for _ in paused.steps())
    assert pauses == len(paused.train_loader) + len(paused.val_loader)
    assert paused.history == whole.epoch()


def _unshuffled(*loops):
    """The loops with training batches in a fixed order: the same batches whichever loop draws random numbers first."""
    for loop in loops:
        loop.train_loader = DataLoader(loop.train_loader.dataset, batch_size=loop.train_loader.batch_size)
    return loops


def _parameters(loop):
    return [parameter.detach().clone() for parameter in loop.model.parameters()]


def test_loops_run_in_lockstep_train_exactly_as_when_they_run_one_after_the_other():
    overhead = _benchmark_module()
    torch.set_num_threads(1)
    first, second = _unshuffled(overhead.RawLoop("cnn", "cpu", False), overhead.RawLoop("cnn", "cpu", False))
    alone = [(first.epoch(), second.epoch()) for _ in range(2)]
    driver, driven = _unshuffled(overhead.RawLoop("cnn", "cpu", False), overhead.RawLoop("cnn", "cpu", False))
    lockstep = []
    for _ in range(2):  # the second epoch trains only if the driven loop's no_grad did not leak into the driver
        seconds = overhead.timed_lockstep_epoch(driver, overhead.DrivenRawLoop(driven))
        assert all(value > 0 for value in seconds)
        lockstep.append((driver.history, driven.history))
    assert lockstep == alone
    for ran_alone, ran_in_lockstep in ((first, driver), (second, driven)):
        for expected, actual in zip(_parameters(ran_alone), _parameters(ran_in_lockstep)):
            assert torch.equal(expected, actual)
    assert torch.is_grad_enabled()


def test_a_driving_trial_hands_over_between_batches_without_a_callback():
    overhead = _benchmark_module()
    torch.set_num_threads(1)
    trial = overhead.TrialLoop("cnn", "cpu", False, drives=True)
    handovers = []
    trial.drive(lambda: handovers.append(torch.is_grad_enabled()))
    training, validation = len(trial.train_loader), len(trial.val_loader)
    assert handovers == [True] * (training - 1) + [False] * (validation - 1)


def test_a_driving_raw_loop_hands_over_as_a_driving_trial_does():
    overhead = _benchmark_module()
    torch.set_num_threads(1)
    raw = overhead.RawLoop("cnn", "cpu", False)
    handovers = []
    raw.drive(lambda: handovers.append(torch.is_grad_enabled()))
    assert handovers == [True] * (len(raw.train_loader) - 1) + [False] * (len(raw.val_loader) - 1)
    assert raw.history["val_acc"] >= 0


@pytest.mark.parametrize("interleave", ["batch", "epoch"])
def test_the_benchmark_prints_its_table(interleave):
    command = [sys.executable, str(BENCHMARK), "--workload", "cnn", "--pairs", "2", "--warmup", "0"]
    command += ["--interleave", interleave]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout
    assert f"interleave={interleave}" in output
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


SCALING = BENCHMARK.with_name("scaling.py")


def test_the_scaling_benchmark_times_trial_and_a_hand_written_ddp_loop_under_torchrun():
    # One process keeps this cheap; the loops are the same on more (tests/distributed checks the Trial there).
    command = [sys.executable, str(SCALING), "--processes", "1", "--pairs", "1", "--samples", "640"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout
    assert "backend=gloo" in output and "| processes | raw DDP samples/s | Trial samples/s | Trial/raw |" in output
    row = [line for line in output.splitlines() if line.startswith("|         1 |")]
    assert len(row) == 1 and float(row[0].split("|")[4]) > 0
