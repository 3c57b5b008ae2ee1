"""Moving metric values from the device to Python numbers, as rarely as possible.

Metrics return tensors that stay on the device while a pass runs. At the end of a pass
:func:`to_python` moves every tensor in a metrics dict to the host in one transfer. During a pass
the per-batch dict is a :class:`LazyMetrics`: reading a value converts (and caches) just that
value, so a batch nobody reads costs no host-device synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def _as_number(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach()
    return value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist()


class LazyMetrics(dict):
    """A metrics dict whose tensor values become Python numbers when they are read.

    Iterating keys, ``len`` and ``in`` never touch the device; ``[]``, ``get``, ``items`` and
    ``values`` convert what they return (a CPU-GPU sync point, paid only by the reader).
    """

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if isinstance(value, torch.Tensor):
            value = _as_number(value)
            dict.__setitem__(self, key, value)
        return value

    # Overriding iteration makes dict(metrics) and {**metrics} go through __getitem__ (CPython copies
    # a dict subclass with its own __iter__ key by key), so copies hold numbers too.
    def __iter__(self) -> Iterator[Any]:
        return dict.__iter__(self)

    def keys(self):  # type: ignore[override]
        return dict.keys(self)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        return iter([(key, self[key]) for key in self])

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return iter([self[key] for key in self])

    def copy(self) -> LazyMetrics:
        return LazyMetrics(dict.items(self))


def to_python(metrics: dict) -> dict:
    """Return a plain dict with every tensor value replaced by a Python number or list.

    Tensors of one device and dtype are concatenated and copied to the host together: one
    synchronisation per device, however many metrics there are (copies of further dtypes find the
    device already idle). Each dtype travels as itself, so an int64 count stays exact next to a
    float32 mean.
    """
    result = dict(dict.items(metrics))
    tensors = {key: value.detach() for key, value in result.items() if isinstance(value, torch.Tensor)}
    groups: dict[tuple[torch.device, torch.dtype], list] = {}
    for key, tensor in tensors.items():
        groups.setdefault((tensor.device, tensor.dtype), []).append(key)
    for keys in groups.values():
        host = torch.cat([tensors[key].reshape(-1) for key in keys]).cpu()
        numbers = host.tolist()
        offset = 0
        for key in keys:
            tensor = tensors[key]
            size = tensor.numel()
            if tensor.dim() == 0:
                result[key] = numbers[offset]
            else:
                result[key] = host[offset : offset + size].reshape(tensor.shape).tolist()
            offset += size
    return result


def end_of_pass(batch_metrics: dict, final_metrics: dict | None) -> dict:
    """The last batch's values updated with the pass's final values, as Python numbers (one sync)."""
    merged = dict(dict.items(batch_metrics))
    merged.update(final_metrics or {})
    return to_python(merged)
