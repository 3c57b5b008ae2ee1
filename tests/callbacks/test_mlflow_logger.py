"""MLflowLogger against the real MLflow: a tracking server on a free loopback port, and a SQLite database alone.

Everything is read back with ``MlflowClient``. The server (SQLite backend, local artifact folder) starts once
for the module and is stopped afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import MLflowLogger, on_end_epoch

mlflow = pytest.importorskip("mlflow")
SERVER_START_TIMEOUT = 90  # seconds; about 6 on an idle 2-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(url: str, server: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"mlflow server did not answer within {SERVER_START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory):
    """``http://127.0.0.1:<port>`` of an ``mlflow server`` with a SQLite backend and a local artifact folder."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log_path = folder / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    # No background job runner: its worker processes would outlive a stopped server.
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, server, log_path)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker are one process group
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory):
    """A SQLite tracking database, with no server, shared by the module: creating one takes seconds."""
    folder = tmp_path_factory.mktemp("mlflow_sqlite")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # the Default experiment keeps its artifacts in ./mlruns as it is when created
        mlflow.MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def sqlite_uri(sqlite_database, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as above, for experiments the test creates
    return sqlite_database


def small_trial(callbacks, optimizer_lr=0.1):
    torch.manual_seed(0)
    x = torch.randn(48, 4)
    y = x[:, :3].argmax(1)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=optimizer_lr, momentum=0.9)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], callbacks=callbacks, verbose=0)
    trial.with_train_data(x, y, batch_size=12, num_workers=0).with_val_data(x, y, batch_size=24, num_workers=0)
    return trial


def steps_and_values(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def test_server_run_holds_parameters_epoch_metrics_checkpoint_and_history_plot(server_uri, tmp_path):
    logger = MLflowLogger(server_uri, experiment_name="digits", run_name="baseline", params={"dropout": 0.25})
    history = small_trial([logger]).run(3)

    client = mlflow.MlflowClient(server_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "baseline"
    assert client.get_experiment(run.info.experiment_id).name == "digits"
    assert run.data.params == {
        "optimizer": "SGD", "optimizer.lr": "0.1", "optimizer.momentum": "0.9", "optimizer.dampening": "0",
        "optimizer.weight_decay": "0", "optimizer.nesterov": "False", "optimizer.maximize": "False",
        "optimizer.differentiable": "False", "batch_size": "12", "epochs": "3", "precision": "fp32",
        "accumulation_steps": "1", "world_size": "1", "model": "Linear", "model_parameters": "15", "dropout": "0.25",
    }  # fmt: skip
    for key in ("loss", "acc", "val_loss", "val_acc", "running_loss"):
        expected = [(epoch, pytest.approx(record[key])) for epoch, record in enumerate(history)]
        assert steps_and_values(client, logger.run_id, key) == expected
    assert not any(key.startswith("batch/") for key in run.data.metrics)  # per-batch logging is off by default

    assert sorted(item.path for item in client.list_artifacts(logger.run_id)) == ["checkpoint.pt", "history.png"]
    folder = client.download_artifacts(logger.run_id, "", str(tmp_path))
    checkpoint = torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)
    assert checkpoint["history"] == history and checkpoint["callback_list"]["callback_states"] == [
        {"run_id": logger.run_id}
    ]
    with open(os.path.join(folder, "history.png"), "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


def test_per_batch_metrics_are_logged_at_a_bounded_rate(sqlite_uri):
    every_batch = MLflowLogger(sqlite_uri, batch_interval=0, log_checkpoint=False, log_history_plot=False)
    small_trial([every_batch]).run(2)
    client = mlflow.MlflowClient(sqlite_uri)
    assert [step for step, _ in steps_and_values(client, every_batch.run_id, "batch/running_loss")] == list(range(8))

    hourly = MLflowLogger(sqlite_uri, batch_interval=3600, log_checkpoint=False, log_history_plot=False)
    small_trial([hourly]).run(2)
    assert [step for step, _ in steps_and_values(client, hourly.run_id, "batch/running_loss")] == [0]


def test_tracking_uri_and_experiment_default_to_mlflow_environment_variables(sqlite_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-environment")
    logger = MLflowLogger(log_checkpoint=False, log_history_plot=False)
    small_trial([logger]).run(1)
    client = mlflow.MlflowClient(sqlite_uri)
    run = client.get_run(logger.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "from-environment"
    assert set(run.data.metrics) >= {"loss", "val_loss"}


def test_training_that_raises_ends_the_run_as_failed_after_logging_the_epochs_it_finished(sqlite_uri):
    @on_end_epoch
    def fail_in_second_epoch(state):
        if state[torchbearer.EPOCH] == 1:
            raise RuntimeError("out of memory")

    logger = MLflowLogger(sqlite_uri)
    with pytest.raises(RuntimeError, match="out of memory"):
        small_trial([logger, fail_in_second_epoch]).run(3)
    client = mlflow.MlflowClient(sqlite_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert [step for step, _ in steps_and_values(client, logger.run_id, "loss")] == [0, 1]
    assert client.list_artifacts(logger.run_id) == []  # the files of a failed run are not logged


def test_a_run_pruned_by_optuna_ends_killed_not_failed(sqlite_uri):
    optuna = pytest.importorskip("optuna")
    from torchbearer.callbacks import OptunaPruning

    class PruneAfterFirstEpoch(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    optuna_trial = optuna.create_study(pruner=PruneAfterFirstEpoch()).ask()
    logger = MLflowLogger(sqlite_uri)
    with pytest.raises(optuna.TrialPruned):
        small_trial([logger, OptunaPruning(optuna_trial)]).run(3)
    client = mlflow.MlflowClient(sqlite_uri)
    assert client.get_run(logger.run_id).info.status == "KILLED"
    assert [step for step, _ in steps_and_values(client, logger.run_id, "val_loss")] == [0]


def test_a_run_started_while_handling_another_error_still_finishes(sqlite_uri):
    logger = MLflowLogger(sqlite_uri, log_checkpoint=False, log_history_plot=False)
    try:
        raise ValueError("handled by the caller, before training")
    except ValueError:
        small_trial([logger]).run(1)
    assert mlflow.MlflowClient(sqlite_uri).get_run(logger.run_id).info.status == "FINISHED"


def test_resumed_trial_continues_the_same_run_without_a_gap_or_a_repeated_step(sqlite_uri):
    first_logger = MLflowLogger(sqlite_uri, log_checkpoint=False, log_history_plot=False)
    first = small_trial([first_logger])
    first.run(2)
    checkpoint = first.state_dict()  # after epochs 0 and 1
    first.run(3)  # epoch 2 is logged, then the process "dies" and the older checkpoint is resumed

    second_logger = MLflowLogger(sqlite_uri, log_checkpoint=False, log_history_plot=False)
    resumed = small_trial([second_logger]).load_state_dict(checkpoint)
    with pytest.warns(UserWarning, match="already holds epochs 2 to 2"):
        history = resumed.run(5)

    assert second_logger.run_id == first_logger.run_id
    client = mlflow.MlflowClient(sqlite_uri)
    assert [step for step, _ in steps_and_values(client, first_logger.run_id, "loss")] == [0, 1, 2, 3, 4]
    assert steps_and_values(client, first_logger.run_id, "val_acc")[3:] == [
        (3, pytest.approx(history[3]["val_acc"])), (4, pytest.approx(history[4]["val_acc"]))
    ]  # fmt: skip
    assert client.get_run(first_logger.run_id).info.status == "FINISHED"


def test_evaluate_after_training_logs_its_new_metrics_at_the_last_epoch(sqlite_uri):
    logger = MLflowLogger(sqlite_uri, log_checkpoint=False, log_history_plot=False)
    trial = small_trial([logger])
    trial.run(2)
    trial.evaluate(data_key=torchbearer.VALIDATION_DATA)  # the same val_ metrics: nothing new to log
    trial.with_test_generator(trial.state[torchbearer.VALIDATION_GENERATOR])
    trial.evaluate(data_key=torchbearer.TEST_DATA)
    client = mlflow.MlflowClient(sqlite_uri)
    assert [step for step, _ in steps_and_values(client, logger.run_id, "val_loss")] == [0, 1]
    assert [step for step, _ in steps_and_values(client, logger.run_id, "test_acc")] == [1]


def test_artifacts_can_be_logged_on_request_after_the_run(sqlite_uri, tmp_path):
    logger = MLflowLogger(sqlite_uri, log_checkpoint=False, log_history_plot=False)
    trial = small_trial([logger])
    trial.run(1)
    client = mlflow.MlflowClient(sqlite_uri)
    assert client.list_artifacts(logger.run_id) == []
    logger.log_checkpoint, logger.log_history_plot = True, True
    logger.log_artifacts()
    assert sorted(item.path for item in client.list_artifacts(logger.run_id)) == ["checkpoint.pt", "history.png"]


def test_without_mlflow_the_error_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an environment without mlflow looks like to import
    with pytest.raises(ImportError, match=r"pip install torchbearer\[mlflow\]"):
        MLflowLogger("sqlite:///unused.db")
