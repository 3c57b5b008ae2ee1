"""Metric containers (:class:`MetricList`, :class:`MetricTree`), :class:`AdvancedMetric` and the default registry.

The registry maps the strings users write in ``Trial(metrics=['acc', 'loss'])`` to metrics. It is
filled when :mod:`torchbearer.metrics` is imported (the built-ins register themselves with
:func:`~torchbearer.metrics.decorators.default_for_key`).
"""

from __future__ import annotations

import collections
import difflib
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.calling import describe
from torchbearer.errors import ConfigurationTypeError, MetricError, TorchbearerWarning, UnknownMetricError
from torchbearer.metric_values import LazyValues
from torchbearer.state import Y_PRED, Y_TRUE, StateKey, X

_DEFAULTS: dict[str, tuple[Any, tuple, dict]] = {}


def add_default(key: str, metric: Any, *args: Any, **kwargs: Any) -> None:
    """Register ``metric`` under the string ``key``; a later registration of the same key replaces it.

    Args:
        key: The string users write in a metric list.
        metric: A metric class (instantiated with ``*args, **kwargs`` at every lookup) or a metric
            instance (returned as is, so every lookup shares it).
        *args: Positional arguments for the class.
        **kwargs: Keyword arguments for the class.
    """
    _DEFAULTS[key] = (metric, args, kwargs)


def _unknown_key_message(key: str) -> str:
    message = f"metric {key!r} is unknown; known metrics: {', '.join(sorted(_DEFAULTS))}"
    close = difflib.get_close_matches(key, _DEFAULTS, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + " (register new keys with torchbearer.metrics.default_for_key)"


def get_default(key: str) -> Metric:
    """Return the metric registered under ``key``: a new instance for a class, the instance itself otherwise.

    Raises:
        UnknownMetricError: (a ``KeyError``) If nothing is registered under ``key``; the message lists the known keys.
    """
    if key not in _DEFAULTS:
        raise UnknownMetricError(_unknown_key_message(key))
    metric, args, kwargs = _DEFAULTS[key]
    return metric(*args, **kwargs) if isinstance(metric, type) else metric


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


def _check_is_a_list(metric_list: Any) -> None:
    """Refuse a lone string or metric where a list of them is expected (``metrics='acc'``)."""
    if isinstance(metric_list, (str, Metric)) and not isinstance(metric_list, MetricList):
        raise ConfigurationTypeError(
            f"metrics must be a list, got the single {type(metric_list).__name__} {str(metric_list)!r}: "
            f"put it in a list, e.g. metrics=[{str(metric_list)!r}]"
        )
    if not isinstance(metric_list, Iterable):
        raise ConfigurationTypeError(
            f"metrics must be a list of metrics or names, got a {type(metric_list).__name__}: "
            "pass e.g. metrics=['acc', 'loss']"
        )


def _warn_on_collisions(outputs: list[tuple[Metric, Any]], by_name: set[int]) -> None:
    """Warn, once per pair, when two metrics report under the same name: only the later value is kept.

    Two metrics both looked up by name (``'acc'`` with ``BCELoss`` and ``'binary_acc'``) merge silently,
    as documented: they compute the same values.
    """
    producers: dict[Any, Metric] = {}
    shared: dict[tuple[Metric, Metric], list[str]] = {}
    for metric, output in outputs:
        for name in output if isinstance(output, dict) else ():
            earlier = producers.setdefault(name, metric)
            if earlier is not metric and not {id(earlier), id(metric)} <= by_name:
                shared.setdefault((earlier, metric), []).append(str(name))
    for (earlier, later), names in shared.items():
        warnings.warn(
            f"the metrics {str(earlier)!r} ({type(earlier).__name__}) and {str(later)!r} ({type(later).__name__}) "
            f"both report {names}; only the values of the later one are kept. Remove one of them, or give one "
            "another name",
            TorchbearerWarning,
            stacklevel=4,
        )


_METRIC_FAILURES = (RuntimeError, IndexError, ValueError, TypeError)


def _metric_error(metric: Metric, args: tuple, error: Exception) -> MetricError:
    """Name the failing metric and describe what it was given (error path only)."""
    state = args[0] if args and isinstance(args[0], Mapping) else {}
    return MetricError(
        f"the metric {str(metric)!r} ({type(metric).__name__}) failed on the prediction "
        f"({describe(state.get(Y_PRED))}) and the target ({describe(state.get(Y_TRUE))}): {error}. Check that "
        "it suits the task (e.g. 'acc' wants class scores of shape (N, C) and class-index targets of shape "
        "(N,)), or remove it from the metrics"
    )


class MetricList(Metric):
    """All the metrics of a Trial: strings are looked up in the default registry, nested lists are flattened.

    ``process`` and ``process_final`` run every metric without gradients and merge their outputs
    into one dict (a later metric overwrites an equal name). The first ``process_final`` warns about
    such collisions unless both metrics were given as names.

    Args:
        metric_list: Metrics, registered strings (``'acc'``, ``'loss'``, ...) and/or ``torchmetrics``
            metrics (wrapped in :class:`~torchbearer.integrations.torchmetrics.TorchMetric`).

    Raises:
        UnknownMetricError: (a ``KeyError``) If a string is not registered.
        ConfigurationTypeError: (a ``TypeError``) If an entry is neither a metric nor a string, or if
            ``metric_list`` is a single metric or string instead of a list.

    Example:
        >>> metrics = MetricList(['acc', 'loss'])
        >>> str(metrics)
        "['acc', 'loss']"
    """

    def __init__(self, metric_list: Iterable[Any]) -> None:
        super().__init__("metric_list")
        _check_is_a_list(metric_list)
        self.metric_list: list[Metric] = []
        self._by_name: set[int] = set()  # ids of metrics looked up by name: their equal names merge silently
        for entry in metric_list:
            resolved = self._resolve(entry)
            self.metric_list.extend(resolved)
            if isinstance(entry, str) and not isinstance(entry, Metric):
                self._by_name.update(map(id, resolved))
        self._collisions_checked = False

    @staticmethod
    def _resolve(entry: Any) -> list[Metric]:
        if isinstance(entry, MetricList):
            return list(entry.metric_list)
        if isinstance(entry, Metric):  # before str: a StateKey is both
            return [entry]
        if isinstance(entry, str):
            return [get_default(entry)]
        from torchbearer.integrations.torchmetrics import maybe_wrap  # here: that module imports this package

        wrapped = maybe_wrap(entry)
        if wrapped is not None:
            return [wrapped]
        if isinstance(entry, type) and issubclass(entry, Metric):
            raise ConfigurationTypeError(
                f"metric {entry.__name__} is a class, not a metric: instantiate it, e.g. metrics=[{entry.__name__}()]"
            )
        raise ConfigurationTypeError(
            f"metric {entry!r} of type {type(entry).__name__} is neither a torchbearer Metric nor a registered "
            "name; pass a Metric instance, a torchmetrics metric or a string such as 'acc' or 'loss'"
        )

    def process(self, *args: Any) -> dict:
        """Per-batch values of every metric, merged (computed without gradients).

        Returns:
            A dict that merges the metrics' outputs when it is first read (see
            :class:`~torchbearer.metric_values.LazyValues`): trees compute their statistics then.

        Raises:
            MetricError: a metric failed with a ``RuntimeError``, ``IndexError``, ``ValueError`` or
                ``TypeError`` (the prediction and target are described; a ``KeyError`` passes unchanged).
            TypeError: a metric returned something other than a dict or ``None``.
        """
        outputs: list[dict] = []
        grad_was_enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)  # what torch.no_grad() does, without its three Python calls per batch
        try:
            for metric in self.metric_list:
                try:
                    output = metric.process(*args)
                except MetricError:  # already names the problem
                    raise
                except _METRIC_FAILURES as error:
                    raise _metric_error(metric, args, error) from error
                if output is not None:
                    if type(output) is not LazyValues and type(output) is not dict:  # the usual types, checked inline
                        _check_output(metric, output, "process")
                    outputs.append(output)
        finally:
            torch._C._set_grad_enabled(grad_was_enabled)
        return LazyValues(lambda: _merged(outputs))

    @torch.no_grad()
    def process_final(self, *args: Any) -> dict:
        """End-of-pass values of every metric, merged (the first call warns if two metrics give one name)."""
        outputs = []
        for metric in self.metric_list:
            try:
                outputs.append((metric, metric.process_final(*args)))
            except MetricError:  # already names the problem
                raise
            except _METRIC_FAILURES as error:
                raise _metric_error(metric, args, error) from error
        if not self._collisions_checked:
            self._collisions_checked = True
            _warn_on_collisions(outputs, self._by_name)
        merged: dict = {}
        for metric, output in outputs:
            _merge_into(merged, metric, output, "process_final")
        return merged

    def train(self) -> None:
        for metric in self.metric_list:
            metric.train()

    def eval(self, data_key: Any = None) -> None:
        for metric in self.metric_list:
            metric.eval(data_key=data_key)

    def reset(self, state: Any) -> None:
        for metric in self.metric_list:
            metric.reset(state)

    def state_dict(self) -> dict:
        """Every metric's state and name, by position.

        Returns:
            ``{'metrics': [state of each metric], 'names': [str of each metric]}``.
        """
        return {
            "metrics": [metric.state_dict() for metric in self.metric_list],
            "names": [str(metric) for metric in self.metric_list],
        }

    def load_state_dict(self, state_dict: dict) -> MetricList:
        """Give each metric the state saved at its position.

        Args:
            state_dict: The output of :meth:`state_dict` for a list of the same metrics in the same order.

        Returns:
            This list.

        Raises:
            ValueError: If the saved names differ from this list's in number or at any position.
        """
        saved_names = list(state_dict["names"])
        names = [str(metric) for metric in self.metric_list]
        if len(saved_names) != len(names) or not all(map(_name_matches, self.metric_list, saved_names)):
            raise ValueError(
                f"metric state was saved for the metrics {saved_names}, but this MetricList holds {names}; "
                "build the Trial with the same metrics, in the same order, to resume it"
            )
        for metric, metric_state in zip(self.metric_list, state_dict["metrics"]):
            metric.load_state_dict(metric_state)
        return self

    def __str__(self) -> str:
        return str([str(metric) for metric in self.metric_list])


def _name_matches(metric: Metric, saved_name: str) -> bool:
    """Whether ``metric`` may take the state saved under ``saved_name``.

    An ``'acc'`` that has not yet seen its criterion has no final name: it keeps the state and
    checks the name itself once the criterion resolves it.
    """
    if getattr(metric, "resolved", True) is False:  # a DefaultAccuracy that has not chosen yet
        return True
    return str(metric) == saved_name


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
        self._unread: collections.deque = collections.deque()  # (batch, weak reference to its values) not read
        self._batches = 0  # batches processed since the last reset
        self._taken = 0  # batches whose values the children have taken
        self._outputs: dict = {}  # the children's outputs for the last batch they took

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
        samples = version = None  # for a single number: its batch's samples; for a tensor: its version counter
        if type(value) is torch.Tensor:
            if self._copies:
                value = value.clone()  # the state's own tensor, which later batches may change in place
            version = value._version
            if value.numel() == 1:
                samples = _samples_in(args)
        elif isinstance(value, (int, float)):
            samples = _samples_in(args)
        self._pending.append((value, samples, version))
        self._batches += 1
        batch = self._batches
        values = LazyValues(lambda: self._values_at(batch))
        self._unread.append((batch, weakref.ref(values)))
        return values

    def _values_at(self, batch: int) -> dict:
        self._catch_up(batch)
        return dict(self._outputs)

    def _catch_up(self, batch: int) -> None:
        """Hand the children the values up to ``batch``; the values of an earlier batch that someone still
        holds unread are computed on the way, so that they stay those of their batch."""
        while self._unread and self._unread[0][0] <= batch:
            held_batch, reference = self._unread.popleft()
            held = reference()
            if held is not None and not held.filled:
                self._hand_over(held_batch)
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


def _check_unchanged(tree: MetricTree, values: list, versions: list) -> None:
    """Raise if a held root value was changed in place after its batch, before the children took it."""
    for value, version in zip(values, versions):
        if version is not None and value._version != version:
            raise MetricError(
                f"the value of the metric {tree.name!r} for an earlier batch (a tensor of shape {tuple(value.shape)}) "
                "was changed in place before its statistics were computed: the statistics take a few batches "
                "together. Return a new tensor from the metric's process (e.g. value.clone()) instead of one "
                "that later batches overwrite"
            )


class AdvancedMetric(Metric):
    """A metric with separate code paths for training and evaluation.

    Override any of :meth:`process_train`, :meth:`process_validate`, :meth:`process_final_train`
    and :meth:`process_final_validate`; :meth:`process` and :meth:`process_final` pick the one for
    the current mode (training until :meth:`eval` is called).

    Args:
        name: The metric's name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._validating = False

    def process_train(self, *args: Any) -> Any:
        """Per-batch value in training mode."""
        return None

    def process_validate(self, *args: Any) -> Any:
        """Per-batch value in evaluation mode."""
        return None

    def process_final_train(self, *args: Any) -> Any:
        """End-of-pass value in training mode."""
        return None

    def process_final_validate(self, *args: Any) -> Any:
        """End-of-pass value in evaluation mode."""
        return None

    def process(self, *args: Any) -> Any:
        return self.process_validate(*args) if self._validating else self.process_train(*args)

    def process_final(self, *args: Any) -> Any:
        return self.process_final_validate(*args) if self._validating else self.process_final_train(*args)

    def eval(self, data_key: Any = None) -> None:
        self._validating = True

    def train(self) -> None:
        self._validating = False
