"""torchbearer 0.5's ``torchbearer.bases``: the base classes, ``get_metric``, ``cite``, grad-mode helpers and closures.

:class:`Callback` and :class:`Metric` are defined in :mod:`torchbearer.base_classes`; the steps of
a closure are :func:`torchbearer.loop.forward_backward`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch

from torchbearer.base_classes import HOOKS, Callback, Metric
from torchbearer.loop import ClosureKeys, forward_backward
from torchbearer.state import DATA, METRICS, TEST_DATA

__all__ = [
    "HOOKS", "Callback", "Metric", "base_closure", "cite", "enable_grad", "get_metric", "no_grad", "standard_closure"
]  # fmt: skip


def get_metric(self_tag: str, state: Mapping, metric_key: str) -> Any:
    """Return ``state[METRICS][metric_key]`` for a callback that monitors a metric.

    Returns ``None`` (and warns, naming the known metrics) when the metric is missing, except for
    ``val_`` metrics during a test-set evaluation, which are skipped silently.
    """
    metrics = state[METRICS]
    if metric_key in metrics:
        return metrics[metric_key]
    if DATA in state and state[DATA] == TEST_DATA and "val_" in metric_key:
        return None
    warnings.warn(
        f"{self_tag}: Failed to retrieve key `{metric_key}` from metrics. Available metrics: {sorted(metrics)}",
        stacklevel=2,
    )
    return None


Citable = TypeVar("Citable")


def cite(bibtex: str) -> Callable[[Citable], Citable]:
    """Decorator that adds a BibTeX citation to a class's or function's docstring.

    The entry goes just before the ``Args:`` / ``Returns:`` section (or at the end).

    Example:
        >>> @cite('@article{x, title={X}}')
        ... def method(): '''Does X.'''
    """

    def decorator(target: Citable) -> Citable:
        doc = target.__doc__ or ""
        block = "::\n\n" + "\n".join("    " + line for line in bibtex.strip().splitlines()) + "\n\n"
        lines = doc.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.strip() in ("Args:", "Returns:"):
                indent = line[: len(line) - len(line.lstrip())]
                indented = "".join(indent + part if part.strip() else part for part in block.splitlines(True))
                lines.insert(index, indented)
                break
        else:
            lines.append("\n\n" + block)
        try:
            target.__doc__ = "".join(lines)
        except AttributeError:  # some builtins have read-only docstrings
            pass
        return target

    return decorator


no_grad = torch.no_grad
enable_grad = torch.enable_grad


def base_closure(x, model, y_pred, y_true, crit, loss, opt) -> Callable[[dict], Any]:
    """Build a training closure over the given state keys (a GAN runs two over different keys).

    Called with the state, the closure zeroes ``state[opt]``'s gradients, runs the forward pass and
    the criterion and back-propagates, calling ``on_forward``, ``on_criterion`` and ``on_backward``
    between them (see :func:`torchbearer.loop.forward_backward`), and returns the loss, so that
    closure-based optimizers (LBFGS) work. It does not step the optimizer.

    Args:
        x: Key of the model's input.
        model: Key of the model.
        y_pred: Key the model's output is stored under.
        y_true: Key of the target (not read when the criterion takes the state alone).
        crit: Key of the criterion.
        loss: Key the loss is stored under.
        opt: Key of the optimizer.

    Example:
        >>> disc = base_closure(Y_PRED, DISC_MODEL, None, DISC_IMGS, DISC_CRIT, LOSS, DISC_OPT)  # doctest: +SKIP
    """
    keys = ClosureKeys(x, model, y_pred, y_true, crit, loss, opt)

    def closure(state: dict) -> Any:
        return forward_backward(state, keys)

    return closure


def standard_closure() -> Callable[[dict], Any]:
    """The Trial's default closure, over the standard keys: :func:`torchbearer.loop.forward_backward` itself."""
    return forward_backward
