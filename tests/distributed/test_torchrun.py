"""An unchanged Trial script under ``torchrun`` (CPU, gloo): parity with one process, one writer, opt-outs.

The reference is the same script run in this process with the global batch (8); the distributed runs
use 2 processes with a per-rank batch of 4. The validation set has 13 samples (not divisible by 2) and
the test set 11.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
import trial_script
from launch import torchrun, torchrun_nodes
from torch import nn

import torchbearer
from torchbearer.distributed import PER_RANK_KEY, load_checkpoint

PER_SAMPLE_METRICS = ("acc", "top_logit", "top_logit_std", "pass_acc")


def _results(folder) -> list[dict]:
    ranks = sorted(name for name in os.listdir(folder) if name.startswith("rank") and name.endswith(".json"))
    results = []
    for name in ranks:
        with open(os.path.join(folder, name)) as file:
            results.append(json.load(file))
    return results


def _check(completed) -> None:
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def _max_difference(first: dict, second: dict) -> float:
    assert set(first) == set(second)
    return max((first[key] - second[key]).abs().max().item() for key in first)


def _assert_metrics_equal(expected: dict, actual: dict, names, tolerance: float = 1e-6) -> None:
    for name in names:
        assert actual[name] == pytest.approx(expected[name], abs=tolerance), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The script in one process, batch 8: its results and final weights."""
    folder = tmp_path_factory.mktemp("one_process")
    trial_script.main(["--out", str(folder), "--batch-size", "8", "--extras"])
    return _results(folder)[0], torch.load(folder / "weights.pt")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The script on 2 processes, batch 4 per rank, with a console printer."""
    folder = tmp_path_factory.mktemp("two_processes")
    completed = torchrun(2, ["--out", str(folder), "--batch-size", "4", "--extras", "--console"])
    _check(completed)
    return folder, _results(folder), completed.stdout


def test_two_processes_with_half_batches_reach_the_weights_of_one_process(reference, two_processes):
    folder, results, _ = two_processes
    assert [result["world_size"] for result in results] == [2, 2]
    assert _max_difference(reference[1], torch.load(folder / "weights.pt")) < 1e-5


def test_metrics_of_every_epoch_equal_one_process(reference, two_processes):
    expected = reference[0]["main"]["history"]
    validation = ["val_" + name for name in (*PER_SAMPLE_METRICS, "loss")]
    for result in two_processes[1]:
        history = result["main"]["history"]
        assert len(history) == len(expected) == 3
        for one_process, distributed in zip(expected, history):
            _assert_metrics_equal(one_process, distributed, validation)
            _assert_metrics_equal(one_process, distributed, (*PER_SAMPLE_METRICS, "loss"), tolerance=1e-5)


def test_evaluate_on_13_samples_equals_one_process_and_pads_nothing(reference, two_processes):
    expected = reference[0]["main"]["evaluate"]
    for result in two_processes[1]:
        assert result["main"]["evaluate"].keys() == expected.keys()
        _assert_metrics_equal(expected, result["main"]["evaluate"], expected)
        assert result["main"]["validation_steps"] == 2  # batches of 4: rank 0 has 8 samples, rank 1 has 5
        assert result["main"]["train_steps"] == 4


def test_predict_returns_every_prediction_once_in_data_set_order(reference, two_processes):
    expected = torch.tensor(reference[0]["main"]["predictions"])
    assert expected.shape == (trial_script.TEST_SIZE, trial_script.CLASSES)
    for result in two_processes[1]:
        torch.testing.assert_close(torch.tensor(result["main"]["predictions"]), expected, atol=1e-5, rtol=0)


def test_only_rank_zero_prints_and_writes_one_csv_row_per_epoch(two_processes):
    _, results, stdout = two_processes
    rows = results[0]["main"]["csv_rows"]
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1", "2"]
    assert results[1]["main"]["csv_rows"] == []
    assert stdout.count("(t): acc=") == 3  # ConsolePrinter's end-of-pass line, once per epoch


def test_the_one_checkpoint_has_no_module_prefix_every_rank_rng_and_loads_in_one_process(reference, two_processes):
    folder, results, _ = two_processes
    assert sorted(name for name in os.listdir(folder) if name.endswith(".pt")) == ["model.pt", "weights.pt"]
    checkpoint = torch.load(folder / "model.pt", weights_only=True)
    assert list(checkpoint[torchbearer.MODEL]) == list(reference[1])
    assert len(checkpoint[PER_RANK_KEY]) == 2

    trial = torchbearer.Trial(*trial_script.model_and_optimizer(), nn.CrossEntropyLoss(), verbose=0)
    trial.load_state_dict(checkpoint, resume=False)
    assert _max_difference(trial.state_dict()[torchbearer.MODEL], torch.load(folder / "weights.pt")) == 0
    for result in results:  # loaded on both ranks after training, it predicts the same
        assert result["main"]["reloaded_predictions"] == result["main"]["predictions"]
        assert result["main"]["reloaded_optimizer_equal"]


def test_accumulation_all_reduces_gradients_only_on_the_last_micro_batch(reference, two_processes):
    for result in two_processes[1]:
        accumulation = result["accumulation"]
        assert accumulation["steps"] == 8  # micro-batches of 2 per rank
        assert accumulation["all_reduces"] == 4  # one per optimizer step, none under no_sync
        for expected, actual in zip(reference[0]["accumulation"]["weights"], accumulation["weights"]):
            torch.testing.assert_close(torch.tensor(actual), torch.tensor(expected), atol=1e-5, rtol=0)


def test_user_wrapped_model_is_kept_and_with_distributed_false_turns_the_automation_off(reference, two_processes):
    for result in two_processes[1]:
        opt_out = result["opt_out"]
        assert opt_out["user_model_kept"]
        assert opt_out["off_model_type"] == "Sequential" and opt_out["off_loader_kept"]
        assert opt_out["off_val_acc"] == reference[0]["opt_out"]["off_val_acc"]  # all 13 samples on each rank


def test_two_torchrun_nodes_meeting_at_a_c10d_rendezvous_train_together(reference, tmp_path):
    finished = torchrun_nodes(2, ["--out", str(tmp_path), "--batch-size", "4"])
    for returncode, output in finished:
        assert returncode == 0, output[-3000:]
    assert [result["world_size"] for result in _results(tmp_path)] == [2, 2]
    assert _max_difference(reference[1], torch.load(tmp_path / "weights.pt")) < 1e-5


def test_a_rank_that_raises_ends_the_whole_job_promptly_with_an_error(tmp_path):
    started = time.monotonic()
    completed = torchrun(2, ["--out", str(tmp_path), "--batch-size", "4", "--fail-rank", "1"], timeout=150)
    assert completed.returncode != 0
    assert "deliberate failure on rank 1" in completed.stdout + completed.stderr
    # The survivor is stopped, not left waiting in a collective until its 120 s timeout.
    assert time.monotonic() - started < 60


def test_a_stop_set_on_one_rank_stops_every_rank_at_the_same_batch(tmp_path):
    started = time.monotonic()
    _check(torchrun(2, ["--out", str(tmp_path), "--batch-size", "4", "--stop-rank", "1"]))
    results = _results(tmp_path)
    assert [result["main"]["last_trained"] for result in results] == [[1, 1], [1, 1]]
    assert [len(result["main"]["history"]) for result in results] == [1, 1]  # epoch 1 stopped in training
    # Without agreeing, rank 0 would wait in its next gradient all-reduce for the 120 s timeout.
    assert time.monotonic() - started < 60


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_processes_on_a_gpu_match_one_process_on_the_cpu(reference, tmp_path):
    # NCCL refuses two ranks on one GPU, so gloo carries the CUDA tensors; with a GPU per rank the default is nccl.
    arguments = ["--out", str(tmp_path), "--batch-size", "4", "--device", "cuda", "--backend", "gloo"]
    _check(torchrun(2, arguments))
    results = _results(tmp_path)
    assert [result["main"]["model_type"] for result in results] == ["_DataParallel"] * 2
    assert _max_difference(reference[1], torch.load(tmp_path / "weights.pt", map_location="cpu")) < 1e-4
    expected = reference[0]["main"]
    for result in results:
        assert result["main"]["reloaded_optimizer_equal"]
        _assert_metrics_equal(expected["evaluate"], result["main"]["evaluate"], expected["evaluate"], tolerance=1e-4)
        names = [prefix + name for prefix in ("", "val_") for name in (*PER_SAMPLE_METRICS, "loss")]
        for one_process, distributed in zip(expected["history"], result["main"]["history"]):
            _assert_metrics_equal(one_process, distributed, names, tolerance=1e-4)
        torch.testing.assert_close(
            torch.tensor(result["main"]["predictions"]), torch.tensor(expected["predictions"]), atol=1e-4, rtol=0
        )


def test_fsdp_on_gloo_matches_one_process_and_its_checkpoints_load_in_one_process(reference, tmp_path):
    sharded = tmp_path / "sharded"
    arguments = ["--out", str(tmp_path), "--batch-size", "4", "--strategy", "fsdp", "--sharded-copy", str(sharded)]
    _check(torchrun(2, arguments))
    results = _results(tmp_path)
    assert [result["main"]["model_type"] for result in results] == ["FSDPSequential"] * 2
    assert _max_difference(reference[1], torch.load(tmp_path / "weights.pt")) < 1e-5
    expected = reference[0]["main"]["evaluate"]
    for result in results:  # per-sample metrics are exact; FSDP evaluates in equal numbers of batches per rank
        assert result["main"]["reloaded_optimizer_equal"]  # a full checkpoint loaded before sharding
        _assert_metrics_equal(expected, result["main"]["evaluate"], ["val_" + name for name in PER_SAMPLE_METRICS])
        predictions = torch.tensor(result["main"]["predictions"])
        torch.testing.assert_close(predictions, torch.tensor(reference[0]["main"]["predictions"]), atol=1e-5, rtol=0)

    full = torch.load(tmp_path / "model.pt", weights_only=True)
    for checkpoint in (tmp_path / "model.pt", sharded):  # a full file and a torch.distributed.checkpoint folder
        trial = torchbearer.Trial(
            *trial_script.model_and_optimizer(), nn.CrossEntropyLoss(), metrics=trial_script.metrics(), verbose=0
        )
        load_checkpoint(trial, str(checkpoint))
        state_dict = trial.state_dict()
        assert _max_difference(full[torchbearer.MODEL], state_dict[torchbearer.MODEL]) == 0
        momentum = state_dict[torchbearer.OPTIMIZER]["state"][0]["momentum_buffer"]
        assert torch.equal(momentum, full[torchbearer.OPTIMIZER]["state"][0]["momentum_buffer"])
        assert len(state_dict[torchbearer.HISTORY]) == 3
