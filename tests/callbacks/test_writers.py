"""The shared writers of the TensorBoard callbacks: one per directory, closed by its last user."""

import sys

import pytest

import torchbearer.callbacks.tensor_board as tensor_board
from torchbearer.callbacks import writers

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator


@pytest.fixture(autouse=True)
def _close_writers_after_each_test():
    yield
    writers._close_open_writers()


def _scalars(path, tag):
    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_writer_is_shared_per_directory_and_closed_by_its_last_user(tmp_path):
    first, second = object(), object()
    writer = writers.get_writer(str(tmp_path), first)
    assert writers.get_writer(str(tmp_path), second) is writer

    writers.close_writer(str(tmp_path), first)
    writer.add_scalar("still/open", 1.0, 0)
    writers.close_writer(str(tmp_path), second)

    assert writers._writers == {}
    assert writers.get_writer(str(tmp_path), first) is not writer
    writers.close_writer(str(tmp_path), first)
    assert _scalars(tmp_path, "still/open") == [(0, 1.0)]


def test_falls_back_to_tensorboardx_without_torch_tensorboard(tmp_path, monkeypatch):
    tensorboardX = pytest.importorskip("tensorboardX")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    writer = writers.get_writer(str(tmp_path), "test")
    assert isinstance(writer, tensorboardX.SummaryWriter)
    writer.add_scalar("epoch/loss", 0.5, 2)
    writers.close_writer(str(tmp_path), "test")

    assert _scalars(tmp_path, "epoch/loss") == [(2, 0.5)]


def test_the_writer_names_stay_importable_from_tensor_board_as_in_0_5():
    for name in ("VisdomParams", "VisdomWriter", "get_writer", "close_writer"):
        assert getattr(tensor_board, name) is getattr(writers, name)


def test_writers_of_other_ranks_discard_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "is_rank_zero", lambda: False)
    writer = writers.get_writer(str(tmp_path), "test")
    writer.add_scalar("epoch/loss", 0.5, 2)
    writers.close_writer(str(tmp_path), "test")
    assert writers._writers == {}
    assert list(tmp_path.iterdir()) == []
