"""Moving batches: deep_to casts floating tensors, keeps other values, and skips no-op moves."""

import collections

import pytest
import torch

from torchbearer import deep_to


def test_deep_to_casts_floating_tensors_and_keeps_integer_ones_in_nested_batches():
    Pair = collections.namedtuple("Pair", "x y")
    batch = [Pair(torch.ones(2, dtype=torch.float64), torch.arange(2)), {"mask": torch.zeros(2)}, "label"]
    moved = deep_to(batch, "cpu", torch.float32)
    assert type(moved) is list and type(moved[0]) is Pair
    assert moved[0].x.dtype is torch.float32 and moved[0].y.dtype is torch.int64
    assert moved[1]["mask"].dtype is torch.float32 and moved[2] == "label"


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_a_tensor_already_on_the_cpu_in_the_right_dtype_is_kept_without_calling_tensor_to(device, monkeypatch):
    x, y = torch.randn(4, 3), torch.arange(4)

    def refuse(*args, **kwargs):
        raise AssertionError("Tensor.to was called for a tensor that needs no move")

    monkeypatch.setattr(torch.Tensor, "to", refuse)
    assert deep_to(x, device, torch.float32) is x
    assert deep_to(y, device, torch.float32) is y


def test_a_move_to_another_device_still_goes_through_tensor_to():
    moved = deep_to(torch.randn(4, 3), "meta", torch.float32)
    assert moved.device.type == "meta" and moved.dtype is torch.float32
    assert deep_to(torch.arange(4), torch.device("meta"), torch.float16).dtype is torch.int64
