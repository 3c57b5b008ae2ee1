"""Metric containers (:class:`MetricList`; :class:`MetricTree` lives in ``tree.py``), :class:`AdvancedMetric` and
the default registry.

The registry maps the strings users write in ``Trial(metrics=['acc', 'loss'])`` to metrics. It is
filled when :mod:`torchbearer.metrics` is imported (the built-ins register themselves with
:func:`~torchbearer.metrics.decorators.default_for_key`).
"""

from __future__ import annotations

import difflib
import functools
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from torchbearer.bases import Metric
from torchbearer.calling import describe
from torchbearer.errors import ConfigurationTypeError, MetricError, TorchbearerWarning, UnknownMetricError
from torchbearer.metric_values import LazyValues
from torchbearer.metrics.tree import PENDING_BATCHES, MetricTree, _check_output, _merge_into, _merged, feed_group
from torchbearer.state import Y_PRED, Y_TRUE

__all__ = [
    "PENDING_BATCHES", "AdvancedMetric", "MetricList", "MetricTree", "add_default", "feed_group", "get_default"
]  # fmt: skip

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


_METRIC_FAILURES = (RuntimeError, IndexError, ValueError, TypeError, AttributeError)


def _metric_error(metric: Metric, args: tuple, error: Exception) -> MetricError:
    """Name the failing metric and describe what it was given (error path only)."""
    state = args[0] if args and isinstance(args[0], Mapping) else {}
    return MetricError(
        f"the metric {str(metric)!r} ({type(metric).__name__}) failed on the prediction "
        f"({describe(state.get(Y_PRED))}) and the target ({describe(state.get(Y_TRUE))}): {error}. Check that "
        "it suits the task (e.g. 'acc' wants class scores of shape (N, C) and class-index targets of shape "
        "(N,)), or remove it from the metrics"
    )


_VALUE_DICTS = (LazyValues, dict)  # what metrics usually return: checked inline, every batch


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
            MetricError: a metric failed with a ``RuntimeError``, ``IndexError``, ``ValueError``,
                ``TypeError`` or ``AttributeError`` (the prediction and target are described; a ``KeyError``
                passes unchanged).
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
                    if type(output) not in _VALUE_DICTS:  # the usual types, checked inline
                        _check_output(metric, output, "process")
                    outputs.append(output)
        finally:
            torch._C._set_grad_enabled(grad_was_enabled)
        return LazyValues(functools.partial(_merged, outputs))

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
