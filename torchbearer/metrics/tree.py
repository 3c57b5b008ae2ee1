"""``MetricTree``: a root metric whose per-batch values feed aggregators, which take them when they are read.

The root runs on every batch; its values wait (at most :data:`PENDING_BATCHES` of them) until
something reads the tree's output, and the children then take them as one group
(:func:`feed_group`). ``torchbearer.metrics.metrics`` re-exports these names (their 0.5 home).
"""

from __future__ import annotations

import functools
import operator
import weakref
from collections.abc import Sequence
from typing import Any

import torch

from torchbearer.base_classes import Metric
from torchbearer.errors import MetricError
from torchbearer.metric_values import LazyValues
from torchbearer.state import Y_TRUE, StateKey, X


def _merge_into(merged: dict, metric: Metric, output: Any, method: str) -> None:
    """Add one metric's output to ``merged`` (later names win); a ``None`` output adds nothing.

    Raises:
        TypeError: the output is neither a dict nor ``None``.
    """
    if output is not None:
        _check_output(metric, output, method)
        merged.update(output)


def _merged(outputs: list[dict]) -> dict:
    merged: dict = {}
    for output in outputs:
        merged.update(output)
    return merged


def _check_output(metric: Metric, output: Any, method: str) -> None:
    """Raise unless ``output`` is a dict of values.

    Raises:
        TypeError: the output is not a dict.
    """
    if not isinstance(output, dict):
        raise TypeError(
            f"metric {metric.name!r} returned a {type(output).__name__} from {method}; a top-level metric "
            "must return a {name: value} dict or None. Wrap it with torchbearer.metrics.to_dict or an "
            "aggregator such as torchbearer.metrics.mean"
        )


PENDING_BATCHES = 64
"""The most batches whose root values a :class:`MetricTree` holds before its children take them, when nothing
reads the tree's values sooner: it bounds the memory held (a few values per batch) and groups the work."""


def feed_group(metric: Metric, values: Sequence[Any], samples: Sequence[int | None]) -> Any:
    """Give ``metric`` the values of consecutive batches and return its output for the last one.

    A metric with ``process_group(values, samples)`` takes them at once (the built-in aggregators do,
    in a few device operations for the whole group); any other gets ``process(value)`` for each.

    Args:
        metric: A child of a :class:`MetricTree`.
        values: The root's value for each batch, oldest first.
        samples: The number of samples in each batch (``None`` where unknown).
    """
    process_group = getattr(metric, "process_group", None)
    if process_group is not None:
        return process_group(values, samples)
    output = None
    for value in values:
        output = metric.process(value)
    return output


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, (list, tuple)):
        return next((item for item in value if isinstance(item, torch.Tensor)), None)
    return value if isinstance(value, torch.Tensor) else None


def _samples_in(args: tuple) -> int | None:
    """How many samples a single-number value (a loss) stands for: the batch size of the state's
    targets, else of its inputs; ``None`` when there is no state."""
    state = args[0] if args else None
    try:
        target = state[Y_TRUE]
        if type(target) is torch.Tensor and target.shape:  # the usual case, checked first: this runs every batch
            return target.shape[0]
    except (KeyError, TypeError, IndexError):
        pass
    for key in (Y_TRUE, X):
        try:
            tensor = _first_tensor(state[key])
        except (KeyError, TypeError, IndexError):  # not in the state, or not a state
            continue
        if tensor is not None and tensor.dim() > 0:
            return tensor.shape[0]
    return None


class MetricTree(Metric):
    """A root metric whose output feeds child metrics (aggregators); the children's outputs are the result.

    If the root returns a dict, its first value is passed on. The root's own value is not part of
    the output.

    The root runs on every batch; the children take its values when something reads the tree's
    output (the dict :meth:`process` returns computes itself when read), or once
    :data:`PENDING_BATCHES` values wait, or at the end of the pass. A reader always sees the
    values of its own batch, also when it keeps a batch's dict to read after later batches. A
    single-number value (a loss) is handed over with the number of samples of its batch, so that
    :class:`~torchbearer.metrics.Mean` weighs every sample once.

    Args:
        metric: The root metric; the tree takes its name.

    Example:
        >>> tree = MetricTree(torchbearer.LOSS)  # doctest: +SKIP
        >>> tree.add_child(ToDict(Mean('loss')))  # doctest: +SKIP
    """

    def __init__(self, metric: Metric) -> None:
        super().__init__(metric.name)
        self.root = metric
        self.children: list[Metric] = []
        self._copies = isinstance(metric, StateKey)  # its values are the state's own tensors
        self._new_pass()

    def _new_pass(self) -> None:
        self._pending: list = []  # (root value, samples, version) the children have not taken yet, oldest first
        self._views: list = []  # a weak reference to the values returned for each of those batches
        self._taken = 0  # batches whose values the children have taken since the last reset
        self._outputs: dict = {}  # the children's outputs for the last batch they took

    @property
    def _batches(self) -> int:
        """Batches processed since the last reset."""
        return self._taken + len(self._pending)

    def add_child(self, child: Metric) -> None:
        """Append a metric that receives the root's output."""
        self._catch_up(self._batches)
        self.children.append(child)

    @staticmethod
    def _unwrap(value: Any) -> Any:
        return next(iter(value.values())) if isinstance(value, dict) else value

    def process(self, *args: Any) -> dict:
        if len(self._pending) >= PENDING_BATCHES:
            self._catch_up(self._batches)
        value = self.root.process(*args)
        if isinstance(value, dict):
            value = next(iter(value.values()))
        if type(value) is torch.Tensor:  # kept with its version counter, to catch a change in place
            if self._copies:
                value = value.clone()  # the state's own tensor, which later batches may change in place
            self._pending.append((value, _samples_in(args) if value.numel() == 1 else None, value._version))
        else:  # a single number stands for the samples of its batch (see Mean)
            self._pending.append((value, _samples_in(args) if isinstance(value, (int, float)) else None, None))
        values = LazyValues(functools.partial(self._values_at, self._taken + len(self._pending)))
        self._views.append(weakref.ref(values))
        return values

    def _values_at(self, batch: int) -> dict:
        self._catch_up(batch)
        return dict(self._outputs)

    def _catch_up(self, batch: int) -> None:
        """Hand the children the values up to ``batch``; the values of an earlier batch that someone still
        holds unread are computed on the way, so that they stay those of their batch."""
        count = batch - self._taken
        if count <= 0:
            return
        first, views = self._taken, list(map(_dereference, self._views[:count]))
        del self._views[:count]
        for offset, held in enumerate(views):
            if held is not None and held.source is not None:  # still held, not read: fill it with its batch's values
                self._hand_over(first + offset + 1)
                held.fill(dict(self._outputs))
        self._hand_over(batch)

    def _hand_over(self, batch: int) -> None:
        count = batch - self._taken
        if count <= 0:
            return
        values, samples, versions = zip(*self._pending[:count])
        del self._pending[:count]
        self._taken = batch
        _check_unchanged(self, values, versions)
        outputs: dict = {}
        for child in self.children:
            _merge_into(outputs, child, feed_group(child, values, samples), "process")
        self._outputs = outputs

    def process_final(self, *args: Any) -> dict:
        self._catch_up(self._batches)
        value = self._unwrap(self.root.process_final(*args))
        merged: dict = {}
        for child in self.children:
            _merge_into(merged, child, child.process_final(value), "process_final")
        return merged

    def train(self) -> None:
        self._catch_up(self._batches)
        self.root.train()
        for child in self.children:
            child.train()

    def eval(self, data_key: Any = None) -> None:
        self._catch_up(self._batches)
        self.root.eval(data_key=data_key)
        for child in self.children:
            child.eval(data_key=data_key)

    def reset(self, state: Any) -> None:
        self._catch_up(self._batches)
        self._new_pass()
        self.root.reset(state)
        for child in self.children:
            child.reset(state)

    def state_dict(self) -> dict:
        """The root's state and each child's, by position: ``{'root': ..., 'children': [...]}``."""
        self._catch_up(self._batches)
        return {"root": self.root.state_dict(), "children": [child.state_dict() for child in self.children]}

    def load_state_dict(self, state_dict: dict) -> MetricTree:
        """Give the root and each child the state saved for it.

        Raises:
            ValueError: If the number of saved children differs from this tree's.
        """
        children_states = state_dict["children"]
        if len(children_states) != len(self.children):
            names = [str(child) for child in self.children]
            raise ValueError(
                f"metric state for the tree {self.name!r} has {len(children_states)} children, but this tree has "
                f"{len(self.children)} ({names}); build the metric with the same statistics to resume it"
            )
        self._catch_up(self._batches)
        self._outputs = {}
        self.root.load_state_dict(state_dict["root"])
        for child, child_state in zip(self.children, children_states):
            child.load_state_dict(child_state)
        return self


_dereference = weakref.ref.__call__
_VERSION = operator.attrgetter("_version")


def _check_unchanged(tree: MetricTree, values: tuple, versions: tuple) -> None:
    """Raise if a held root value was changed in place after its batch, before the children took it."""
    if versions.count(None) == len(versions):  # no tensors (e.g. masked values): nothing to check
        return
    try:
        if tuple(map(_VERSION, values)) == versions:  # all tensors, all unchanged: compared at C speed
            return
    except AttributeError:  # some values are not tensors: compare one by one
        pass
    for value, version in zip(values, versions):
        if version is not None and value._version != version:
            raise MetricError(
                f"the value of the metric {tree.name!r} for an earlier batch (a tensor of shape {tuple(value.shape)}) "
                "was changed in place before its statistics were computed: the statistics take a few batches "
                "together. Return a new tensor from the metric's process (e.g. value.clone()) instead of one "
                "that later batches overwrite"
            )
