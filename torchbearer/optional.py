"""Importing an optional integration's package, with an error that says which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, needed_by: str, extra: str) -> ModuleType:
    """Import ``module`` for ``needed_by`` (a callback's name).

    Raises:
        ImportError: the package is not installed; the message names ``pip install torchbearer[extra]``.

    Example:
        >>> mlflow = import_optional("mlflow", "MLflowLogger", "mlflow")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{needed_by} needs {module}; install it with: pip install torchbearer[{extra}]") from error
