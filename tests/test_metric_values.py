"""Metric values move to the host once per pass, or when a reader asks for one."""

import torch

from torchbearer.metric_values import LazyMetrics, end_of_pass, to_python


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


def test_lazy_metrics_convert_only_what_is_read():
    metrics = LazyMetrics({"read": torch.tensor(1.5), "unread": torch.tensor(2.5)})
    assert metrics["read"] == 1.5 and isinstance(metrics["read"], float)
    assert isinstance(dict.__getitem__(metrics, "unread"), torch.Tensor)
    assert list(metrics) == ["read", "unread"] and "unread" in metrics


def test_copies_of_lazy_metrics_hold_numbers():
    metrics = LazyMetrics({"loss": torch.tensor(0.5)})
    assert dict(metrics) == {"loss": 0.5} and {**metrics} == {"loss": 0.5}
    assert dict(metrics.items()) == {"loss": 0.5} and list(metrics.values()) == [0.5]


def test_end_of_pass_merges_final_values_after_batch_values():
    merged = end_of_pass(LazyMetrics({"running_loss": torch.tensor(1.0)}), {"loss": torch.tensor(0.5)})
    assert merged == {"running_loss": 1.0, "loss": 0.5} and list(merged) == ["running_loss", "loss"]


def test_to_python_keeps_each_dtype_exact_next_to_others():
    values = {"count": torch.tensor(20_000_001), "mean": torch.tensor(0.5), "flags": torch.tensor([True, False])}
    assert to_python(values) == {"count": 20_000_001, "mean": 0.5, "flags": [True, False]}
    assert isinstance(to_python(values)["count"], int) and isinstance(to_python(values)["flags"][0], bool)


def test_to_python_converts_half_precision_and_empty_values():
    values = {"half": torch.tensor(0.5, dtype=torch.float16), "none": torch.zeros(0), "grid": torch.ones(2, 2)}
    assert to_python(values) == {"half": 0.5, "none": [], "grid": [[1.0, 1.0], [1.0, 1.0]]}
