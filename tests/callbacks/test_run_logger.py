"""What the experiment-tracker loggers share: the run's parameters, and rank zero alone logging under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from torchbearer import Trial
from torchbearer.callbacks.run_logger import FAILED, FINISHED, KILLED, end_status, run_parameters

SCRIPT = Path(__file__).with_name("run_logger_script.py")


def test_run_parameters_describe_optimizer_groups_data_precision_and_model():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.5}, {"params": model[2].parameters()}], lr=0.1, momentum=0.9
    )
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), verbose=0).with_accumulation(4).with_precision("bf16")
    trial.with_train_data(torch.randn(10, 4), torch.zeros(10).long(), batch_size=5, num_workers=0)
    parameters = run_parameters({**trial.state, "max_epochs": 7})
    optimizer_keys = ("optimizer", "optimizer.0.lr", "optimizer.1.lr", "optimizer.1.momentum")
    assert {key: parameters[key] for key in optimizer_keys} == {
        "optimizer": "SGD", "optimizer.0.lr": 0.5, "optimizer.1.lr": 0.1, "optimizer.1.momentum": 0.9
    }  # fmt: skip
    assert "optimizer.lr" not in parameters and not any(key.endswith("params") for key in parameters)
    assert {key: parameters[key] for key in parameters if not key.startswith("optimizer")} == {
        "epochs": 7, "precision": "bf16", "accumulation_steps": 4, "world_size": 1, "model": "Sequential",
        "model_parameters": 4 * 8 + 8 + 8 * 2 + 2, "batch_size": 5,
    }  # fmt: skip


def test_end_status_tells_a_failure_from_an_interruption_or_an_optuna_prune():
    optuna = pytest.importorskip("optuna")
    assert end_status(None) == FINISHED
    assert end_status(RuntimeError("nan")) == FAILED
    assert end_status(KeyboardInterrupt()) == KILLED
    assert end_status(optuna.TrialPruned()) == KILLED


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_under_torchrun_rank_zero_alone_logs_one_run_to_each_tracker(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    launch_variables = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    environment = {name: value for name, value in os.environ.items() if name not in launch_variables}
    environment.update(OMP_NUM_THREADS="1", WANDB_SILENT="true", WANDB_CONSOLE="off", WANDB_DISABLE_GIT="true")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}", str(SCRIPT), uri, str(tmp_path),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]

    ranks = sorted((json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")), key=str)
    by_rank = {entry["rank"]: entry["run_ids"] for entry in ranks}
    assert by_rank[1] == [None, None] and None not in by_rank[0]
    mlflow_run_id, wandb_run_id = by_rank[0]

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("torchrun").experiment_id])
    assert run.info.run_id == mlflow_run_id and run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2" and run.data.params["batch_size"] == "8"
    assert sorted(metric.step for metric in client.get_metric_history(mlflow_run_id, "val_loss")) == [0, 1]
    assert [item.path for item in client.list_artifacts(mlflow_run_id)] == ["checkpoint.pt"]
    assert [folder.name.rsplit("-", 1)[1] for folder in (tmp_path / "wandb").glob("offline-run-*")] == [wandb_run_id]
