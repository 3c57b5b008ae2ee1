"""Using ``torchmetrics`` metrics as torchbearer metrics.

A ``torchmetrics.Metric`` put in ``Trial(metrics=[...])`` is wrapped in :class:`TorchMetric` (by
:func:`maybe_wrap`, which ``MetricList`` calls), so it behaves like a built-in metric: updated on
the device with ``(y_pred, y_true)`` after every batch, computed once at the end of every pass,
reset before every pass, and named ``<name>`` in training and ``val_<name>`` / ``test_<name>`` /
``train_<name>`` in evaluation.

Nothing here imports torchmetrics: :func:`maybe_wrap` only recognises torchmetrics objects when
torchmetrics has already been imported (it must have been, for such an object to exist).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from torchbearer.base_classes import Metric
from torchbearer.state import Y_PRED, Y_TRUE, evaluation_prefix

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``'MulticlassF1Score'`` -> ``'multiclass_f1_score'``, ``'AUROC'`` -> ``'auroc'``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _flatten(name: str, value: Any) -> dict[str, Any]:
    """Name a ``compute()`` result: a dict gives ``name_<key>`` entries, a tuple/list ``name_<i>`` entries."""
    if isinstance(value, dict):
        return {f"{name}_{key}": item for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return {f"{name}_{index}": item for index, item in enumerate(value)}
    return {name: value}


class TorchMetric(Metric):
    """A ``torchmetrics`` metric as a torchbearer metric.

    Training and evaluation passes use separate copies of the metric (the given object for training,
    a ``clone()`` for evaluation), so their states never mix. Each pass resets its copy, every batch
    calls ``update(y_pred, y_true)`` on the device (the copy is moved to the predictions' device
    the first time), and the end of the pass calls ``compute()`` once. No value is produced per
    batch, so the metric adds no host-device synchronisation of its own; torchmetrics' input checks
    do synchronise, so build metrics with ``validate_args=False`` once the inputs are known to be right.

    Under ``torch.distributed``, ``compute()`` all-gathers the states of every process (torchmetrics'
    own ``sync_on_compute``), so every process must finish the pass.

    Args:
        metric: A ``torchmetrics.Metric``.
        name: The output name; default the metric's class name in snake case
            (``MulticlassAccuracy`` -> ``multiclass_accuracy``).
        pred_key: State key of the predictions.
        target_key: State key of the targets.

    Example:
        >>> from torchmetrics.classification import MulticlassF1Score  # doctest: +SKIP
        >>> f1 = TorchMetric(MulticlassF1Score(num_classes=10), name='f1')  # doctest: +SKIP
        >>> Trial(model, optimizer, loss, metrics=['loss', f1])  # history has 'f1' and 'val_f1'  # doctest: +SKIP
    """

    def __init__(
        self,
        metric: Any,
        name: str | None = None,
        pred_key: str = Y_PRED,
        target_key: str = Y_TRUE,
    ) -> None:
        super().__init__(name if name is not None else snake_case(type(metric).__name__))
        self.pred_key = pred_key
        self.target_key = target_key
        self.train_metric = metric
        self._eval_metric: Any = None
        self._active = metric
        self._prefix = ""

    @property
    def eval_metric(self) -> Any:
        """The copy used by evaluation passes (cloned from the training metric when first needed)."""
        if self._eval_metric is None:
            self._eval_metric = self.train_metric.clone()
        return self._eval_metric

    def train(self) -> None:
        self._active = self.train_metric
        self._prefix = ""

    def eval(self, data_key: Any = None) -> None:
        self._active = self.eval_metric
        self._prefix = f"{evaluation_prefix(data_key)}_"

    def reset(self, state: Any) -> None:
        self._active.reset()

    def process(self, *args: Any) -> None:
        state = args[0]
        predictions, targets = state[self.pred_key], state[self.target_key]
        if self._active.device != predictions.device:  # compares device objects: no synchronisation
            self._active.to(predictions.device)
        self._active.update(predictions, targets)
        return None

    def process_final(self, *args: Any) -> dict[str, Any] | None:
        if self._active.update_count == 0:  # nothing seen this pass (e.g. no targets)
            return None
        return _flatten(self._prefix + self.name, self._active.compute())

    def state_dict(self) -> dict:
        """The metric states and update counts of the training copy and, once made, the evaluation copy."""
        state = {"train": _metric_state(self.train_metric)}
        if self._eval_metric is not None:
            state["eval"] = _metric_state(self._eval_metric)
        return state

    def load_state_dict(self, state_dict: dict) -> TorchMetric:
        """Restore the metric states saved by :meth:`state_dict`.

        Raises:
            ValueError: If the saved states are not the ones this torchmetrics metric has.
        """
        _load_metric_state(self.train_metric, state_dict["train"])
        if "eval" in state_dict:
            _load_metric_state(self.eval_metric, state_dict["eval"])
        return self


def _copy_state(value: Any, device: Any = None) -> Any:
    """A copy of a tensor state, or of each tensor of a list state, on ``device`` (default: where it is).

    Copies, because torchmetrics updates states in place (``self.total += n``): a saved state must
    not change afterwards, and a loaded one must not change the caller's dict.
    """
    if isinstance(value, list):
        return [item.to(device, copy=True) for item in value]
    return value.to(device, copy=True)


def _metric_state(metric: Any) -> dict[str, Any]:
    # torchmetrics' own state_dict holds the states only under persistent(True), which would change
    # the user's module; metric_state always has them
    states = {name: _copy_state(value) for name, value in metric.metric_state.items()}
    return {"states": states, "update_count": metric.update_count}


def _load_metric_state(metric: Any, saved: dict[str, Any]) -> None:
    expected, given = sorted(metric.metric_state), sorted(saved["states"])
    if expected != given:
        raise ValueError(
            f"the saved torchmetrics state has the states {given}, but {type(metric).__name__} has {expected}; "
            "resume with the metric the state was saved from"
        )
    for name, value in saved["states"].items():
        setattr(metric, name, _copy_state(value, metric.device))  # as torchmetrics' _load_from_state_dict does
    metric._update_count = saved["update_count"]  # no public setter; compute() and process_final read it
    metric._computed = None  # drop a result cached from the states before the load


def maybe_wrap(entry: Any) -> Metric | None:
    """Return ``TorchMetric(entry)`` if ``entry`` is a ``torchmetrics.Metric``, else ``None``.

    ``MetricList`` calls this for entries that are neither torchbearer metrics nor strings. It never
    imports torchmetrics.
    """
    torchmetrics = sys.modules.get("torchmetrics")
    if torchmetrics is None:
        return None
    if isinstance(entry, torchmetrics.Metric):
        return TorchMetric(entry)
    return None
