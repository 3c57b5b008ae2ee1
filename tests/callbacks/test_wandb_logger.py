"""WandbLogger in offline mode (no account, no network): the run folder it writes holds the metrics and config.

The ``.wandb`` transaction log is read back with wandb's own reader (``wandb leet inspect --json``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import WandbLogger, on_end_epoch

pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """W&B offline, with every folder it writes under ``tmp_path``.

    wandb keeps the settings of its first run for the rest of the process, ``WANDB_DIR`` among them, so the
    tests also give each logger ``dir=offline``.
    """
    for name, value in {
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true", "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"), "WANDB_DATA_DIR": str(tmp_path / "data"),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return tmp_path


def small_trial(callbacks):
    torch.manual_seed(0)
    x = torch.randn(48, 4)
    y = x[:, :3].argmax(1)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], callbacks=callbacks, verbose=0)
    trial.with_train_data(x, y, batch_size=12, num_workers=0).with_val_data(x, y, batch_size=24, num_workers=0)
    return trial


def run_folders(root: Path, run_id: str) -> list[Path]:
    return sorted((root / "wandb").glob(f"offline-run-*-{run_id}*"))


def inspect(run_folder: Path, *options: str) -> str:
    """``wandb leet inspect`` on the run's ``.wandb`` file: W&B's own reader of its transaction log."""
    (log,) = run_folder.glob("run-*.wandb")
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *options, str(log)]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


def history_rows(run_folder: Path) -> list[dict]:
    records = [json.loads(line) for line in inspect(run_folder).splitlines() if line.strip()]
    return [record["history"]["item"] for record in records if record["type"] == "history"]


def summary(run_folder: Path) -> dict:
    return json.loads(inspect(run_folder, "--summary"))


def test_offline_run_holds_epoch_metrics_config_and_files(offline):
    logger = WandbLogger(project="digits", name="baseline", config={"dropout": 0.25}, dir=offline)
    history = small_trial([logger]).run(3)

    (folder,) = run_folders(offline, logger.run_id)
    rows = history_rows(folder)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert [row[key] for row in rows] == [pytest.approx(record[key]) for record in history]
    run = summary(folder)
    assert run["state"] == "finished" and run["project"] == "digits" and run["name"] == "baseline"
    config = {key: value for key, value in run["config"].items() if not key.startswith("_")}
    assert config == {
        "optimizer": "Adam", "optimizer.lr": 0.01, "optimizer.betas": [0.9, 0.999], "optimizer.eps": 1e-08,
        "optimizer.weight_decay": 0, "optimizer.amsgrad": False, "optimizer.maximize": False,
        "optimizer.capturable": False, "optimizer.differentiable": False, "optimizer.decoupled_weight_decay": False,
        "batch_size": 12, "epochs": 3, "precision": "fp32", "accumulation_steps": 1, "world_size": 1,
        "model": "Linear", "model_parameters": 15, "dropout": 0.25,
    }  # fmt: skip
    checkpoint = torch.load(folder / "files" / "checkpoint.pt", weights_only=True)
    assert checkpoint["history"] == history
    assert (folder / "files" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_metrics_go_against_their_own_step_at_a_bounded_rate(offline):
    logger = WandbLogger(batch_interval=0, log_checkpoint=False, log_history_plot=False, dir=offline)
    small_trial([logger]).run(2)
    rows = history_rows(run_folders(offline, logger.run_id)[0])
    assert [row["batch/step"] for row in rows if "batch/step" in row] == list(range(8))
    assert [row["epoch"] for row in rows if "epoch" in row] == [0, 1]


def test_training_that_raises_marks_the_offline_run_failed(offline):
    @on_end_epoch
    def fail_in_second_epoch(state):
        if state[torchbearer.EPOCH] == 1:
            raise RuntimeError("diverged")

    logger = WandbLogger(log_checkpoint=False, log_history_plot=False, dir=offline)
    with pytest.raises(RuntimeError, match="diverged"):
        small_trial([logger, fail_in_second_epoch]).run(3)
    (folder,) = run_folders(offline, logger.run_id)
    assert summary(folder)["state"] == "failed"
    assert [row["epoch"] for row in history_rows(folder)] == [0, 1]
    assert logger.run is None  # the W&B run is finished, so a later wandb.init starts afresh


def test_resumed_trial_continues_the_same_run_id_from_the_next_epoch(offline):
    first_logger = WandbLogger(log_checkpoint=False, log_history_plot=False, dir=offline)
    first = small_trial([first_logger])
    first.run(2)
    second_logger = WandbLogger(log_checkpoint=False, log_history_plot=False, dir=offline)
    small_trial([second_logger]).load_state_dict(first.state_dict()).run(4)

    assert second_logger.run_id == first_logger.run_id
    folders = run_folders(offline, first_logger.run_id)  # offline, a continued run writes a second folder
    assert len(folders) == 2
    assert [row["epoch"] for folder in folders for row in history_rows(folder)] == [0, 1, 2, 3]


def test_without_wandb_the_error_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an environment without wandb looks like to import
    with pytest.raises(ImportError, match=r"pip install torchbearer\[wandb\]"):
        WandbLogger()
