"""Checkpoint I/O: atomic writes that survive a killed writer, loads that refuse damaged or unsafe files."""

import contextlib
import os
import pathlib
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from torchbearer.io import (
    CheckpointError,
    DamagedCheckpointError,
    UnsafeCheckpointError,
    _host,
    atomic_save,
    safe_load,
)

# Imports torch once, then forks one writer per line read from stdin. A writer reports its pid after
# its first complete save and keeps saving until it is killed (or for at most a minute). The
# supervisor reaps each writer and reports it, so the test knows the writer is gone.
SUPERVISOR = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torchbearer.io import atomic_save

    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            deadline, step = time.monotonic() + 60, 0
            while time.monotonic() < deadline:
                atomic_save({"step": step, "weights": torch.full((2_000_000,), float(step))}, sys.argv[1])
                if step == 0:
                    os.write(1, f"{os.getpid()}\\n".encode())
                step += 1
            os._exit(0)
        os.waitpid(pid, 0)
        os.write(1, b"reaped\\n")
    """
)


class _TouchOnLoad:
    """Unpickling this object creates a file: a stand-in for a malicious payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _temporaries(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_atomic_save_round_trips_through_safe_load(tmp_path):
    path = tmp_path / "checkpoint.pt"
    saved = {"model": {"weight": torch.arange(6.0).reshape(2, 3)}, "history": [{"loss": 0.5}], "epoch": 3}
    atomic_save(saved, path)
    loaded = safe_load(path)
    assert torch.equal(loaded["model"]["weight"], saved["model"]["weight"])
    assert loaded["history"] == [{"loss": 0.5}] and loaded["epoch"] == 3
    assert _temporaries(tmp_path) == []


def test_atomic_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"version": 1}, path)
    atomic_save({"version": 2}, path)
    assert safe_load(path) == {"version": 2}


@pytest.mark.skipif(os.name != "posix", reason="fork, SIGKILL and process probing are POSIX")
def test_killed_writer_never_leaves_a_truncated_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
        text=True,
        bufsize=1,
    )
    generator = random.Random(0)
    try:
        for _ in range(5):
            supervisor.stdin.write("write\n")
            writer_pid = supervisor.stdout.readline()
            assert writer_pid.strip().isdigit(), "the writer failed before its first save"
            time.sleep(generator.uniform(0.0, 0.3))
            os.kill(int(writer_pid), signal.SIGKILL)
            assert supervisor.stdout.readline() == "reaped\n"

            loaded = safe_load(path)
            assert loaded["weights"].shape == (2_000_000,)
            assert torch.all(loaded["weights"] == float(loaded["step"]))
            assert len(_temporaries(tmp_path)) <= 1  # only the one in flight when killed
    finally:
        supervisor.stdin.close()
        supervisor.wait(timeout=60)
        supervisor.stdout.close()

    atomic_save({"step": -1}, path)
    assert _temporaries(tmp_path) == []  # the killed writers' leftovers were cleaned up


def test_failed_save_keeps_the_previous_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"version": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        atomic_save({"unpicklable": lambda: None}, path)
    assert safe_load(path) == {"version": 1}
    assert _temporaries(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="stale temporaries are only recognised on POSIX")
def test_save_removes_stale_temporaries_of_dead_writers_but_keeps_live_ones(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = _host()
    stale = tmp_path / f".other.pt.{dead.pid}@{host}.0123abcd.tmp"
    live = tmp_path / f".other.pt.{os.getppid()}@{host}.4567abcd.tmp"
    foreign = tmp_path / f".other.pt.{dead.pid}@another-host.89abcdef.tmp"
    for leftover in (stale, live, foreign):
        leftover.write_bytes(b"partial")
    atomic_save({"x": 1}, tmp_path / "model.pt")
    assert not stale.exists()
    assert live.exists() and foreign.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_gets_the_usual_permissions(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"x": 1}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("kept_fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file_is_reported_as_damaged_naming_it(tmp_path, kept_fraction):
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept_fraction)])
    with pytest.raises(DamagedCheckpointError, match="damaged") as raised:
        safe_load(path)
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, RuntimeError) and isinstance(raised.value, CheckpointError)


def test_altered_byte_in_tensor_data_is_reported_as_damaged(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.randn(1000)}, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's bytes, which torch.load alone does not check
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpointError, match="checksum"):
        safe_load(path)


def test_garbage_file_is_reported_as_damaged(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint")
    with pytest.raises(DamagedCheckpointError, match="notes.pt"):
        safe_load(path)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running_its_payload(tmp_path, writer):
    path = tmp_path / "evil.pt"
    marker = tmp_path / "payload-ran"
    if writer == "torch.save":
        torch.save({"weights": _TouchOnLoad(marker)}, path)
    else:
        with open(path, "wb") as file:
            pickle.dump(_TouchOnLoad(marker), file, protocol=2)

    with pytest.raises(UnsafeCheckpointError, match="arbitrary code") as raised:
        safe_load(path)

    assert str(path) in str(raised.value)
    assert isinstance(raised.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()
    with contextlib.suppress(RuntimeError):  # a bare pickle is no checkpoint, but the payload runs first
        torch.load(path, weights_only=False)  # the unsafe load shows the payload is real
    assert marker.exists()


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "absent.pt")
