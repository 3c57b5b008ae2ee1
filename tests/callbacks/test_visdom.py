"""The visdom mode of the TensorBoard callbacks, against a real visdom server started for this module."""

import base64
import html
import io
import json
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch

import torchbearer
from torchbearer.callbacks import writers
from torchbearer.callbacks.tensor_board import TensorBoard, TensorBoardImages, TensorBoardText, VisdomParams

visdom = pytest.importorskip("visdom")

# `python -m visdom.server` downloads its JavaScript first, which fails offline; the server itself does not need it.
_SERVER_SCRIPT = (
    "import sys; sys.argv = ['visdom', '-port', sys.argv[1], '--hostname', '127.0.0.1', '-env_path', sys.argv[2],"
    " '-logging_level', 'WARNING']; from visdom.server.run_server import main; main()"
)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(port, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the visdom server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the visdom server did not listen on port {port} within {timeout} s")


@pytest.fixture(scope="module")
def visdom_port(tmp_path_factory):
    """Start a visdom server on a free port for the module's tests; stop it afterwards."""
    port = _free_port()
    env_path = tmp_path_factory.mktemp("visdom_env")
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT, str(port), str(env_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_listening(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def params(visdom_port):
    """VisdomParams for the test server, with an env of its own."""
    params = VisdomParams()
    params.SERVER = "http://127.0.0.1"
    params.PORT = visdom_port
    params.ENV = f"test-{uuid.uuid4().hex[:8]}"
    params.USE_INCOMING_SOCKET = False
    return params


def _windows(params, env=None):
    client = visdom.Visdom(server=params.SERVER, port=params.PORT, use_incoming_socket=False)
    return list(json.loads(client.get_window_data(env=env or params.ENV)).values())


def _plot(windows, title):
    [window] = [window for window in windows if window["type"] == "plot" and window["title"] == title]
    [line] = window["content"]["data"]
    return list(zip(line["x"], line["y"]))


def _texts(windows):
    return [window["content"] for window in windows if window["type"] == "text"]


def _image_size(window):
    from PIL import Image

    encoded = window["content"]["src"].split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(encoded))).size


def _trial(callbacks, images=False):
    """A tiny model trained on 4 batches of 10 and validated on the same 40 samples."""
    if images:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        x = torch.rand(40, 1, 4, 4)
    else:
        model = torch.nn.Linear(4, 3)
        x = torch.randn(40, 4)
    y = torch.randint(0, 3, (40,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = torchbearer.Trial(
        model, optimizer, torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=callbacks, verbose=0
    )
    return trial.with_train_data(x, y, batch_size=10).with_val_data(x, y, batch_size=10)


@pytest.mark.filterwarnings("error::UserWarning")  # no metric or graph write may fail
def test_epoch_metrics_arrive_as_line_plots(params):
    history = _trial([TensorBoard(visdom=True, visdom_params=params)]).run(2)

    windows = _windows(params)
    for name in ("loss", "acc", "val_loss"):
        assert _plot(windows, f"epoch-{name}") == [(e, pytest.approx(history[e][name])) for e in range(2)]
    assert writers._writers == {}


def test_batch_metrics_steps_count_across_epochs(params):
    seen = []

    class RecordRunningLoss(torchbearer.Callback):
        def on_step_training(self, state):
            seen.append(
                (state[torchbearer.EPOCH], state[torchbearer.BATCH], state[torchbearer.METRICS]["running_loss"])
            )

    callback = TensorBoard(visdom=True, visdom_params=params, write_batch_metrics=True, batch_step_size=2)
    _trial([callback, RecordRunningLoss()]).run(2)

    expected = [(epoch * 4 + batch, pytest.approx(loss)) for epoch, batch, loss in seen if batch % 2 == 0]
    assert _plot(_windows(params), "batch-running_loss") == expected


def test_text_tables_arrive_in_the_env_and_batch_tables_in_its_batch_env(params):
    callback = TensorBoardText(visdom=True, visdom_params=params, write_batch_metrics=True, batch_step_size=2)
    trial = _trial([callback])
    history = trial.run(2)

    texts = _texts(_windows(params))
    assert f"<pre>{html.escape(str(trial))}</pre>" in texts
    epoch_texts = sorted(text for text in texts if text.startswith("<h4>"))
    assert [text[: len("<h4>Epoch 0</h4>")] for text in epoch_texts] == ["<h4>Epoch 0</h4>", "<h4>Epoch 1</h4>"]
    assert f"<tr><td>val_loss</td><td>{history[1]['val_loss']}</td></tr>" in epoch_texts[1]
    batch_headings = sorted(text.split("</h3>")[0] for text in _texts(_windows(params, f"{params.ENV}-batch")))
    assert batch_headings == [f"<h3>Epoch {e} - Batch {b}" for e in range(2) for b in (0, 2)]


def test_image_grids_arrive_once_per_epoch(params):
    callback = TensorBoardImages(visdom=True, visdom_params=params, key=torchbearer.X, num_images=8, nrow=4)
    _trial([callback], images=True).run(2)

    images = [window for window in _windows(params) if window["type"] == "image"]
    assert sorted(window["title"] for window in images) == ["Image0", "Image1"]
    assert all(_image_size(window) == (26, 14) for window in images)  # 8 4x4 images, 4 per row, padding 2


def test_default_params_come_from_the_class_and_events_are_logged_to_a_file(visdom_port, tmp_path, monkeypatch):
    env = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(VisdomParams, "SERVER", "http://127.0.0.1")
    monkeypatch.setattr(VisdomParams, "PORT", visdom_port)
    monkeypatch.setattr(VisdomParams, "ENV", env)
    monkeypatch.setattr(VisdomParams, "USE_INCOMING_SOCKET", False)
    history = _trial([TensorBoard(str(tmp_path), visdom=True)]).run(1)

    assert _plot(_windows(VisdomParams()), "epoch-loss") == [(0, pytest.approx(history[0]["loss"]))]
    logged = (tmp_path / "Linear_torchbearer" / "log.log").read_text()
    assert '"epoch-loss"' in logged


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # visdom warns on each failed request
def test_unreachable_server_raises_connection_error_naming_it():
    params = VisdomParams()
    params.SERVER, params.PORT, params.USE_INCOMING_SOCKET = "http://127.0.0.1", _free_port(), False
    callback = TensorBoard(visdom=True, visdom_params=params)

    with pytest.raises(ConnectionError, match=f"no visdom server answered at http://127.0.0.1:{params.PORT}"):
        callback.on_start({torchbearer.MODEL: torch.nn.Linear(1, 1)})
