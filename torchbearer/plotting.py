"""Plotting a finished run's history to a PNG file.

The figure is drawn on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, so it
never touches pyplot's global figure list or the display backend: it works the same in scripts,
notebooks and on headless servers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_EVAL_PREFIXES = ("val_", "test_", "train_")
_STEP_KEYS = frozenset({"train_steps", "validation_steps"})


def _import_matplotlib() -> tuple[Any, Any]:
    """``matplotlib.figure.Figure`` and ``matplotlib.ticker.MaxNLocator``."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError("plot_history needs matplotlib; install it with: pip install torchbearer[plots]") from error
    return Figure, MaxNLocator


def _base_name(key: str) -> str:
    """Strip an evaluation prefix: ``'val_loss'`` -> ``'loss'``, ``'loss'`` -> ``'loss'``."""
    for prefix in _EVAL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_keys(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key that holds a number in some record, in first-seen order (step counts excluded)."""
    keys: dict[str, None] = {}
    for record in history:
        for key, value in record.items():
            if str(key) not in _STEP_KEYS and _is_number(value):
                keys.setdefault(str(key), None)
    return list(keys)


def _default_metrics(keys: Iterable[str]) -> list[str]:
    """Base names to plot by default: all of them, except ``running_x`` when ``x`` is there too."""
    bases = list(dict.fromkeys(_base_name(key) for key in keys))
    return [name for name in bases if not (name.startswith("running_") and name[len("running_") :] in bases)]


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The epochs at which ``key`` was recorded and its values there."""
    epochs, values = [], []
    for epoch, record in enumerate(history):
        value = record.get(key)
        if _is_number(value):
            epochs.append(epoch)
            values.append(value)
    return epochs, values


def _draw_metric(axes: Any, history: Sequence[Mapping[str, Any]], name: str, keys: Sequence[str], locator: Any) -> None:
    for key in keys:
        if _base_name(key) == name:
            epochs, values = _series(history, key)
            axes.plot(epochs, values, marker="o", label=key)
    axes.set_title(name)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(locator(integer=True))  # epochs are whole numbers, from 0 as in the history
    axes.legend()


def plot_history(history: Sequence[Mapping[str, Any]], path: str, metrics: Sequence[str] | None = None) -> str:
    """Write a PNG with one subplot per metric: the training curve and its ``val_``/``test_`` curves together.

    The x axis counts epochs from 0, as the history, ``state[EPOCH]`` and the loggers do, with whole-number ticks.

    Args:
        history: The list returned by ``Trial.run`` (one dict of metric values per epoch).
        path: Where to write the PNG.
        metrics: Base metric names to plot (``'loss'`` plots ``loss``, ``val_loss``, ``test_loss``).
            Default: every numeric metric in the history, leaving out ``running_x`` when ``x`` exists.

    Returns:
        ``path``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If there is nothing to plot, or a requested metric is not in the history.

    Example:
        >>> history = trial.run(10)  # doctest: +SKIP
        >>> plot_history(history, 'history.png', metrics=['loss', 'acc'])  # doctest: +SKIP
    """
    keys = _numeric_keys(history)
    names = list(metrics) if metrics is not None else _default_metrics(keys)
    available = sorted({_base_name(key) for key in keys})
    missing = [name for name in names if name not in available]
    if missing or not names:
        raise ValueError(
            f"plot_history: cannot plot metrics {missing or names}; the history has numeric metrics {available}"
        )
    figure_class, locator = _import_matplotlib()
    columns = min(2, len(names))
    rows = math.ceil(len(names) / columns)
    figure = figure_class(figsize=(6 * columns, 4 * rows))
    for index, name in enumerate(names):
        _draw_metric(figure.add_subplot(rows, columns, index + 1), history, name, keys, locator)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
