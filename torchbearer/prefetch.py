"""Iterating a data set one batch ahead, so the next batch's copy to the device overlaps this batch's work.

``Trial.with_prefetch()`` makes every pass iterate its loader through a :class:`DevicePrefetcher`.
On a GPU the copy of batch ``i + 1`` is queued on a side CUDA stream as soon as batch ``i`` is
handed out; with a ``DataLoader(pin_memory=True)`` that copy runs while batch ``i`` trains. The
batch loader's own move to the device then finds the tensors already there and does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from torchbearer.devices import deep_to
from torchbearer.state import DATA_TYPE, DEVICE, GENERATOR, ITERATOR, PREFETCH

_EXHAUSTED = object()


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) batch of lists, tuples and dicts."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, (list, tuple)):
        for item in batch:
            yield from _tensors(item)
    elif isinstance(batch, dict):
        for item in batch.values():
            yield from _tensors(item)


class DevicePrefetcher:
    """An iterator over ``iterator``'s batches, each moved to ``device`` (floating tensors cast to ``dtype``)
    one batch ahead of the one handed out.

    Args:
        iterator: The loader's iterator.
        device: Where batches go.
        dtype: The dtype for floating tensors (as ``Trial.to`` sets it).

    Example:
        >>> for x, y in DevicePrefetcher(iter(loader), 'cuda', torch.float32):  # doctest: +SKIP
        ...     ...
    """

    def __init__(self, iterator: Iterator, device: Any, dtype: torch.dtype) -> None:
        self._iterator = iterator
        self._device, self._dtype = device, dtype
        target = torch.device(device)
        self._stream = torch.cuda.Stream(target) if target.type == "cuda" else None
        self._next = self._fetch()

    def _fetch(self) -> Any:
        try:
            batch = next(self._iterator)
        except StopIteration:
            return _EXHAUSTED
        if self._stream is None:
            return deep_to(batch, self._device, self._dtype)
        with torch.cuda.stream(self._stream):  # queued on the side stream: overlaps the current batch's work
            return deep_to(batch, self._device, self._dtype)

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> Any:
        batch = self._next
        if batch is _EXHAUSTED:
            raise StopIteration
        if self._stream is not None:
            current = torch.cuda.current_stream(self._stream.device)
            current.wait_stream(self._stream)  # the copy finishes before the batch is used
            for tensor in _tensors(batch):
                tensor.record_stream(current)  # its memory is not reused while the current stream needs it
        self._next = self._fetch()
        return batch


def iterate(generator: Iterable, state: dict) -> Iterator:
    """A fresh iterator over ``generator``: through a :class:`DevicePrefetcher` when prefetching is on."""
    iterator = iter(generator)
    if state.get(PREFETCH):
        return DevicePrefetcher(iterator, state[DEVICE], state[DATA_TYPE])
    return iterator


def restart(state: dict) -> None:
    """Start the pass's generator over (``state[ITERATOR]``), as :func:`iterate` would."""
    state[ITERATOR] = iterate(state[GENERATOR], state)
