"""Metric values are computed when read and move to the host once per pass."""

import copy
import pickle

import pytest
import torch

from torchbearer.metric_values import LazyValues, end_of_pass, to_python


def test_to_python_converts_scalars_vectors_and_keeps_other_values():
    values = {"a": torch.tensor(0.25), "b": torch.tensor([1.0, 2.0]), "n": torch.tensor(3), "s": "text", "i": 4}
    assert to_python(values) == {"a": 0.25, "b": [1.0, 2.0], "n": 3, "s": "text", "i": 4}
    assert isinstance(to_python(values)["n"], int)


def test_to_python_copies_each_device_to_the_host_once(monkeypatch):
    calls = []
    original = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        calls.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    to_python({f"m{i}": torch.tensor(float(i)) for i in range(10)})
    assert len(calls) == 1


def counting(values):
    calls = []

    def source():
        calls.append(1)
        return dict(values)

    return LazyValues(source), calls


def test_lazy_values_are_computed_once_at_the_first_read_and_keep_their_type():
    values, calls = counting({"loss": torch.tensor(0.5)})
    assert calls == []
    assert isinstance(values["loss"], torch.Tensor) and calls == [1]
    assert list(values) == ["loss"] and len(values) == 1 and calls == [1]


@pytest.mark.parametrize(
    "read",
    [
        lambda values: "loss" in values,
        lambda values: list(values),
        lambda values: len(values),
        lambda values: dict(values),
        lambda values: {**values},
        lambda values: values.get("loss"),
        lambda values: list(values.items()),
        lambda values: values == {"loss": 1},
        lambda values: repr(values),
        lambda values: copy.copy(values),
    ],
)
def test_every_way_of_reading_computes_the_values(read):
    values, calls = counting({"loss": 1})
    read(values)
    assert calls == [1] and dict(values) == {"loss": 1}


def test_a_value_written_before_the_first_read_is_kept():
    values, _ = counting({"loss": 1})
    values["mine"] = 2
    assert dict(values) == {"loss": 1, "mine": 2}


def test_lazy_values_pickle_as_a_plain_dict():
    values, _ = counting({"loss": 1.5})
    restored = pickle.loads(pickle.dumps(values))
    assert type(restored) is dict and restored == {"loss": 1.5}


def test_end_of_pass_merges_final_values_after_batch_values():
    merged = end_of_pass(LazyValues(lambda: {"running_loss": torch.tensor(1.0)}), {"loss": torch.tensor(0.5)})
    assert merged == {"running_loss": 1.0, "loss": 0.5} and list(merged) == ["running_loss", "loss"]


def test_to_python_keeps_each_dtype_exact_next_to_others():
    values = {"count": torch.tensor(20_000_001), "mean": torch.tensor(0.5), "flags": torch.tensor([True, False])}
    assert to_python(values) == {"count": 20_000_001, "mean": 0.5, "flags": [True, False]}
    assert isinstance(to_python(values)["count"], int) and isinstance(to_python(values)["flags"][0], bool)


def test_to_python_converts_half_precision_and_empty_values():
    values = {"half": torch.tensor(0.5, dtype=torch.float16), "none": torch.zeros(0), "grid": torch.ones(2, 2)}
    assert to_python(values) == {"half": 0.5, "none": [], "grid": [[1.0, 1.0], [1.0, 1.0]]}
