"""Decorators that build metrics: register a default key, wrap a function, and attach statistics.

The statistics decorators (:func:`mean`, :func:`std`, :func:`var`, :func:`running_mean`) accept a
metric class or instance, bare or called with arguments. They build a
:class:`~torchbearer.metrics.metrics.MetricTree` whose root is the decorated metric and append one
aggregator child named after the root; stacking them appends more children to the same tree, in
order from the innermost decorator out.

Example:
    >>> @default_for_key('my')
    ... @running_mean(step_size=1)
    ... @std
    ... @mean
    ... @lambda_metric('my_metric')
    ... def my_metric(y_pred, y_true):
    ...     return (y_pred.argmax(1) == y_true).float()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torchbearer.bases import Metric
from torchbearer.metrics.aggregators import Mean, RunningMean, Std, Var
from torchbearer.metrics.masked import Dim
from torchbearer.metrics.metrics import MetricTree, add_default
from torchbearer.metrics.wrappers import BatchLambda, EpochLambda, ToDict

Registered = TypeVar("Registered")
ChildFactory = Callable[[str], Metric]


def default_for_key(key: str, *args: Any, **kwargs: Any) -> Callable[[Registered], Registered]:
    """Register the decorated metric class or instance under ``key`` (see :func:`add_default`).

    A class is instantiated with ``*args, **kwargs`` at every lookup; an instance is shared. Stack
    the decorator to register aliases. The decorated object is returned unchanged.

    Example:
        >>> @default_for_key('top_3_acc', k=3)  # doctest: +SKIP
        ... class TopThree(TopKCategoricalAccuracy): ...
    """

    def decorator(metric: Registered) -> Registered:
        add_default(key, metric, *args, **kwargs)
        return metric

    return decorator


def lambda_metric(name: str, on_epoch: bool = False) -> Callable[[Callable[[Any, Any], Any]], Metric]:
    """Turn a function ``fn(y_pred, y_true)`` into a metric instance.

    Args:
        name: The metric's name.
        on_epoch: If True, ``fn`` receives everything seen in the pass (an :class:`EpochLambda`,
            running every 50 training batches); otherwise each batch (a :class:`BatchLambda`).
    """

    def decorator(metric_function: Callable[[Any, Any], Any]) -> Metric:
        if on_epoch:
            return EpochLambda(name, metric_function)
        return BatchLambda(name, metric_function)

    return decorator


def _subclass(base: type, clazz: type, init: Callable[..., None]) -> type:
    """A subclass of ``base`` that looks like ``clazz`` (name, doc, module) and is built by ``init``."""
    namespace = {
        "__init__": init,
        "__doc__": clazz.__doc__,
        "__module__": clazz.__module__,
        "__qualname__": clazz.__qualname__,
    }
    return type(clazz.__name__, (base,), namespace)


def to_dict(clazz: Any) -> Any:
    """Make a metric report ``{name: value}`` (``val_name`` etc. in evaluation) via :class:`ToDict`.

    Args:
        clazz: A metric class (a ``ToDict`` subclass taking the same arguments is returned) or an
            instance (wrapped in a ``ToDict``).
    """
    if not isinstance(clazz, type):
        return ToDict(clazz)

    def __init__(self: ToDict, *args: Any, **kwargs: Any) -> None:
        ToDict.__init__(self, clazz(*args, **kwargs))

    return _subclass(ToDict, clazz, __init__)


def _as_tree(metric: Metric) -> MetricTree:
    return metric if isinstance(metric, MetricTree) else MetricTree(metric)


def _attach(target: Any, make_child: ChildFactory) -> Any:
    """Append ``make_child(root name)`` to the tree of ``target`` (a metric instance or class)."""
    if not isinstance(target, type):
        tree = _as_tree(target)
        tree.add_child(make_child(tree.root.name))
        return tree

    def __init__(self: MetricTree, *args: Any, **kwargs: Any) -> None:
        inner = _as_tree(target(*args, **kwargs))
        MetricTree.__init__(self, inner.root)
        self.children = inner.children
        self.add_child(make_child(self.root.name))

    return _subclass(MetricTree, target, __init__)


def _statistic(clazz: Any, make_child: ChildFactory) -> Any:
    """Apply now when given a target, else return a decorator (the bare and the called forms)."""
    if clazz is None:
        return lambda target: _attach(target, make_child)
    return _attach(clazz, make_child)


def mean(clazz: Any = None, dim: Dim = None) -> Any:
    """Add the mean over the pass, reported as ``name`` (``val_name`` etc. in evaluation).

    Args:
        clazz: The metric class or instance; omit to use ``@mean(dim=...)`` with arguments.
        dim: Dimension(s) to average over; ``None`` for all.
    """
    return _statistic(clazz, lambda name: ToDict(Mean(name, dim)))


def std(clazz: Any = None, unbiased: bool = True, dim: Dim = None) -> Any:
    """Add the standard deviation over the pass, reported as ``name_std`` (``val_name_std`` etc.).

    Args:
        clazz: The metric class or instance; omit to use ``@std(...)`` with arguments.
        unbiased: Divide by ``n - 1`` instead of ``n``.
        dim: Dimension(s) to reduce; ``None`` for all.
    """
    return _statistic(clazz, lambda name: ToDict(Std(name + "_std", unbiased, dim)))


def var(clazz: Any = None, unbiased: bool = True, dim: Dim = None) -> Any:
    """Add the variance over the pass, reported as ``name_var`` (``val_name_var`` etc.).

    Args:
        clazz: The metric class or instance; omit to use ``@var(...)`` with arguments.
        unbiased: Divide by ``n - 1`` instead of ``n``.
        dim: Dimension(s) to reduce; ``None`` for all.
    """
    return _statistic(clazz, lambda name: ToDict(Var(name + "_var", unbiased, dim)))


def running_mean(clazz: Any = None, batch_size: int = 50, step_size: int = 10, dim: Dim = None) -> Any:
    """Add a running mean over recent training batches, reported as ``running_name`` (nothing in evaluation).

    Args:
        clazz: The metric class or instance; omit to use ``@running_mean(...)`` with arguments.
        batch_size: Number of batches in the window.
        step_size: Batches between two recomputations.
        dim: Dimension(s) each batch is averaged over; ``None`` for all.
    """
    return _statistic(clazz, lambda name: ToDict(RunningMean("running_" + name, batch_size, step_size, dim)))
