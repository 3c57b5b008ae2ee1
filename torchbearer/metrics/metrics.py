"""Metric containers (:class:`MetricList`, :class:`MetricTree`), :class:`AdvancedMetric` and the default registry.

The registry maps the strings users write in ``Trial(metrics=['acc', 'loss'])`` to metrics. It is
filled when :mod:`torchbearer.metrics` is imported (the built-ins register themselves with
:func:`~torchbearer.metrics.decorators.default_for_key`).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.calling import describe
from torchbearer.errors import ConfigurationTypeError, MetricError, TorchbearerWarning, UnknownMetricError
from torchbearer.state import BATCH_METRICS_UNREAD, Y_PRED, Y_TRUE

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
    if output is None:
        return
    if type(output) is not dict and not isinstance(output, dict):
        raise TypeError(
            f"metric {metric.name!r} returned a {type(output).__name__} from {method}; a top-level metric "
            "must return a {name: value} dict or None. Wrap it with torchbearer.metrics.to_dict or an "
            "aggregator such as torchbearer.metrics.mean"
        )
    merged.update(output)


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

        Raises:
            MetricError: a metric failed with a ``RuntimeError``, ``IndexError``, ``ValueError`` or
                ``TypeError`` (the prediction and target are described; a ``KeyError`` passes unchanged).
        """
        merged: dict = {}
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
                if type(output) is dict:  # the common cases, checked inline: this runs for every metric every batch
                    merged.update(output)
                elif output is not None:
                    _merge_into(merged, metric, output, "process")
        finally:
            torch._C._set_grad_enabled(grad_was_enabled)
        return merged

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
    from torchbearer.metrics.default import DefaultAccuracy  # here: that module imports this one

    if isinstance(metric, DefaultAccuracy) and not metric.resolved:
        return True
    return str(metric) == saved_name


_UNREAD_GROUP = 64  # batches a grouped tree holds when nothing reads its per-batch outputs


def _takes_groups(metric: Metric) -> bool:
    return getattr(metric, "takes_groups", False)


class MetricTree(Metric):
    """A root metric whose output feeds child metrics (aggregators); the children's outputs are the result.

    If the root returns a dict, its first value is passed on. The root's own value is not part of
    the output.

    When every child takes values in groups (the built-in aggregators do: they have ``takes_groups``,
    ``process_group(values)`` and ``values_until_output()``), the tree keeps the root's values and
    hands them over a few batches at a time, just before a child's output can change; until then
    it returns the children's latest outputs. The results are those of handing every value over at
    once, at a fraction of the per-batch cost.

    A root can defer its own work the same way: if it has ``batch_inputs(state)`` (what ``process``
    reads, held for later) and ``process_batches(inputs)`` (``process`` for a group of batches,
    returning a list of values or :class:`~torchbearer.metrics.masked.Batches`), and every child has
    ``takes_batches``, the tree holds the inputs and the root computes a group's values at once
    (the built-in accuracy and loss do).

    In a pass whose state has ``BATCH_METRICS_UNREAD`` set (nothing can read the per-batch values,
    see ``torchbearer.loop``), a grouped tree hands values over every ``64`` batches instead, and
    its ``process_final`` also returns its children's latest per-batch outputs under their final
    values, so that the end of the pass sees the same values. (The first batch of a pass is still
    handed over at once: it gives the per-batch values their keys, in order.)

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
        self._grouped: bool | None = None  # whether every child takes groups; None: not checked since a change
        self._defers_root = False  # whether the root's values are computed a group at a time too
        self._pending: list = []  # root values (or, deferring, root inputs) the children have not seen yet
        self._deliver_at = 1  # how many pending values the children can wait for
        self._unread = False  # whether nothing reads the outputs before the pass ends (BATCH_METRICS_UNREAD)
        self._outputs: dict = {}  # the children's outputs after the last hand-over

    def add_child(self, child: Metric) -> None:
        """Append a metric that receives the root's output."""
        self._deliver()
        self.children.append(child)
        self._grouped = None

    @staticmethod
    def _unwrap(value: Any) -> Any:
        return next(iter(value.values())) if isinstance(value, dict) else value

    def _decide_grouping(self, state: Any) -> None:
        self._grouped = bool(self.children) and all(_takes_groups(child) for child in self.children)
        self._defers_root = (
            self._grouped
            and callable(getattr(self.root, "process_batches", None))
            and all(getattr(child, "takes_batches", False) for child in self.children)
        )
        self._unread = self._grouped and isinstance(state, Mapping) and state.get(BATCH_METRICS_UNREAD) is True

    def process(self, *args: Any) -> dict:
        if self._grouped is None:
            self._decide_grouping(args[0] if args else None)
        if self._defers_root:
            self._pending.append(self.root.batch_inputs(*args))
        else:
            value = self.root.process(*args)
            if isinstance(value, dict):
                value = next(iter(value.values()))
            if not self._grouped:
                return self._process_children(value)
            self._pending.append(value)
        if len(self._pending) >= self._deliver_at:
            self._deliver()
        return self._outputs.copy()  # a copy: the caller may change it

    def _process_children(self, value: Any) -> dict:
        merged: dict = {}
        for child in self.children:
            output = child.process(value)
            if type(output) is dict:  # inline, as in MetricList.process
                merged.update(output)
            elif output is not None:
                _merge_into(merged, child, output, "process")
        return merged

    def _deliver(self) -> None:
        """Hand the pending values to the children (computed first if the root defers) and keep their outputs."""
        if not self._pending:
            return
        values = self.root.process_batches(self._pending) if self._defers_root else self._pending
        self._pending = []
        outputs: dict = {}
        for child in self.children:
            _merge_into(outputs, child, child.process_group(values), "process")
        self._outputs = outputs
        self._deliver_at = (
            _UNREAD_GROUP if self._unread else min(child.values_until_output() for child in self.children)
        )

    def _restart(self) -> None:
        """Forget pending values and outputs: the children's state is about to be replaced or reset."""
        self._pending, self._defers_root = [], False
        self._new_pass()

    def _new_pass(self) -> None:
        """Forget the outputs and the grouping, decided again at the next batch (a new pass may differ)."""
        self._outputs, self._deliver_at, self._grouped, self._unread = {}, 1, None, False

    def process_final(self, *args: Any) -> dict:
        self._deliver()
        value = self._unwrap(self.root.process_final(*args))
        merged: dict = dict(self._outputs) if self._unread else {}  # the per-batch values nothing has read yet
        for child in self.children:
            _merge_into(merged, child, child.process_final(value), "process_final")
        return merged

    def train(self) -> None:
        self._deliver()
        self._new_pass()
        self.root.train()
        for child in self.children:
            child.train()

    def eval(self, data_key: Any = None) -> None:
        self._deliver()
        self._new_pass()
        self.root.eval(data_key=data_key)
        for child in self.children:
            child.eval(data_key=data_key)

    def reset(self, state: Any) -> None:
        self._restart()
        self.root.reset(state)
        for child in self.children:
            child.reset(state)

    def state_dict(self) -> dict:
        """The root's state and each child's, by position: ``{'root': ..., 'children': [...]}``."""
        self._deliver()
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
        self._restart()
        self.root.load_state_dict(state_dict["root"])
        for child, child_state in zip(self.children, children_states):
            child.load_state_dict(child_state)
        return self


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
