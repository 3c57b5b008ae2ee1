"""Exceptions the library raises for misuse, each named after what went wrong, and the warning it gives
when training can go on.

They subclass the built-in exception a user would otherwise have seen (``ValueError``,
``TypeError``, ``RuntimeError``, ``KeyError``), so existing ``except`` clauses keep working. Every
message names the offending value and the fix. ``tests/test_misuse.py`` is the catalogue of cases.
"""


class TorchbearerError(Exception):
    """Base class of every error raised by torchbearer itself."""


class BatchError(TorchbearerError, ValueError):
    """A batch from the data loader does not have the structure the pass needs."""


class CriterionError(TorchbearerError, ValueError):
    """The criterion failed on, or returned something unusable for, the model's output."""


class ModelCallError(TorchbearerError, RuntimeError):
    """The model could not be called on the batch."""


class BackwardError(TorchbearerError, RuntimeError):
    """Back-propagating the loss failed (autograd's own error is the cause; prediction and target are described)."""


class StateDictError(TorchbearerError, ValueError):
    """A state dict matches neither a Trial nor the model."""


class ConfigurationError(TorchbearerError, ValueError):
    """A Trial was configured with values it cannot use."""


class ConfigurationTypeError(TorchbearerError, TypeError):
    """A Trial, callback list or metric list was given a value of the wrong type (e.g. a class, not an instance)."""


class UnknownMetricError(TorchbearerError, KeyError):
    """A metric name is not in the registry of default metrics."""

    def __str__(self) -> str:  # KeyError would show the message quoted, as if it were a key
        return str(self.args[0]) if self.args else ""


class MetricError(TorchbearerError, RuntimeError):
    """A metric failed on the model's output and the targets (a wrong kind of metric for the task)."""


class TorchbearerWarning(UserWarning):
    """A likely mistake that still lets training go on (filter it with ``warnings.filterwarnings``)."""
