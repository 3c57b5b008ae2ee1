"""Metric values: computed when something reads them, moved to the host once per pass.

During a pass ``state[METRICS]`` is a :class:`LazyValues`: a dict that asks the metrics for its
contents the first time anything reads it (item access, iteration, ``len``, ``in``, a copy, ...).
A batch whose values nobody reads costs no metric work beyond the per-batch root values, and a
reader always sees the values of its batch. Values keep the type the metric produced: a tensor
stays a tensor on its device, and nothing waits for the device unless the reader asks for a
Python number.

At the end of a pass :func:`to_python` moves every tensor to the host in one transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class LazyValues(dict):
    """A dict of metric values computed by ``source()`` when it is first read (or changed).

    Args:
        source: Returns the values (a dict); called at most once. The attribute ``source`` is ``None``
            once the values are in.

    Example:
        >>> values = LazyValues(lambda: {'acc': 0.5})
        >>> values['acc']
        0.5
    """

    __slots__ = ("source", "__weakref__")

    def __init__(self, source: Callable[[], dict]) -> None:  # empty until filled: no dict.__init__ needed
        self.source: Callable[[], dict] | None = source

    def fill(self, values: dict | None = None) -> None:
        """Compute the values now (or take ``values``), if not done yet."""
        source, self.source = self.source, None
        if source is not None:
            dict.update(self, source() if values is None else values)

    def __reduce__(self) -> tuple:  # pickles, copies and torch.save see a plain dict of the values
        self.fill()
        return dict, (dict(dict.items(self)),)


def _filling(name: str) -> Callable:
    method = getattr(dict, name)

    def read(self: LazyValues, *args: Any, **kwargs: Any) -> Any:
        if self.source is not None:
            self.fill()
        for other in args:  # values == other_values, values | other_values: both computed
            if type(other) is LazyValues:
                other.fill()
        return method(self, *args, **kwargs)

    read.__name__ = name
    return read


# Every dict method that reads or changes the contents computes them first. Overriding __iter__ also
# makes dict(values) and {**values} go through keys() and item access, so copies see the values too.
for _name in (
    "__getitem__", "__contains__", "__iter__", "__len__", "__repr__", "__eq__", "__ne__", "__or__", "__ror__",
    "__ior__", "__reversed__", "__setitem__", "__delitem__", "keys", "values", "items", "get", "copy", "pop",
    "popitem", "setdefault", "update", "clear",
):  # fmt: skip
    setattr(LazyValues, _name, _filling(_name))
LazyValues.__hash__ = None  # type: ignore[assignment]  # a dict: unhashable


def to_python(metrics: dict) -> dict:
    """Return a plain dict with every tensor value replaced by a Python number or list.

    Tensors of one device and dtype are concatenated and copied to the host together: one
    synchronisation per device, however many metrics there are (copies of further dtypes find the
    device already idle). Each dtype travels as itself, so an int64 count stays exact next to a
    float32 mean.
    """
    result = dict(metrics.items())
    tensors = {key: value for key, value in result.items() if isinstance(value, torch.Tensor)}
    groups: dict[tuple[torch.device, torch.dtype], list] = {}
    for key, tensor in tensors.items():
        groups.setdefault((tensor.device, tensor.dtype), []).append(key)
    for keys in groups.values():
        with torch.no_grad():  # the values leave any graph they are part of
            host = torch.cat([tensors[key].reshape(-1) for key in keys]).cpu()  # a CPU-GPU sync point, once per pass
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
    merged = dict(batch_metrics.items())
    merged.update(final_metrics or {})
    return to_python(merged)
