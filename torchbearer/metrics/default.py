"""``'acc'``: the accuracy that suits the criterion (categorical, binary, squared error, ...).

``__loss_map__`` maps a criterion's name to the metric class (or factory) ``'acc'`` becomes; extensions add
entries (``torchbearer.callbacks.mixup`` maps ``'mixup_loss'`` to ``MixupAcc``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torchbearer.bases import Metric
from torchbearer.metrics.decorators import default_for_key
from torchbearer.metrics.primitives import BinaryAccuracy, CategoricalAccuracy, MeanSquaredError
from torchbearer.state import CRITERION

__loss_map__: dict[str, Callable[[], Metric]] = {
    "CrossEntropyLoss": CategoricalAccuracy,
    "NLLLoss": CategoricalAccuracy,
    "cross_entropy": CategoricalAccuracy,
    "nll_loss": CategoricalAccuracy,
    "MSELoss": MeanSquaredError,
    "mse_loss": MeanSquaredError,
    "BCELoss": BinaryAccuracy,
    "BCEWithLogitsLoss": functools.partial(BinaryAccuracy, logits=True),
    "binary_cross_entropy": BinaryAccuracy,
    "binary_cross_entropy_with_logits": functools.partial(BinaryAccuracy, logits=True),
}

_UNSET = object()


def criterion_name(criterion: Any) -> str:
    """The name ``'acc'`` resolves by: the criterion's ``__name__``, else its class name."""
    return getattr(criterion, "__name__", type(criterion).__name__)


@default_for_key("accuracy")
@default_for_key("acc")
class DefaultAccuracy(Metric):
    """Accuracy chosen by the criterion at the first :meth:`reset`; categorical accuracy until then.

    The criterion's name is looked up in :data:`__loss_map__` (``CrossEntropyLoss`` → ``acc``,
    ``BCELoss`` → ``binary_acc``, ``BCEWithLogitsLoss`` → ``binary_acc`` of logits, ``MSELoss`` → ``mse``,
    ...); any other criterion keeps categorical accuracy. The choice is made once per instance; every other
    call goes to the chosen metric.

    A state loaded before the choice is kept and given to the chosen metric right after it is
    chosen, before that metric's first reset, so loading before or after the first reset both work.

    Example:
        >>> trial = Trial(model, optimizer, nn.BCELoss(), metrics=['acc'])  # doctest: +SKIP
        >>> # reports running_binary_acc, binary_acc, val_binary_acc
    """

    def __init__(self) -> None:
        self.metric: Metric = CategoricalAccuracy()
        super().__init__(self.metric.name)
        self._resolved = False
        self._eval_key: Any = _UNSET  # _UNSET while training, else the data key given to eval
        self._pending_state: dict | None = None  # loaded before resolution, applied right after it

    @property
    def resolved(self) -> bool:
        """Whether the criterion has chosen the metric yet (at the first :meth:`reset`)."""
        return self._resolved

    def _resolve(self, state: Any) -> None:
        criterion = state[CRITERION] if CRITERION in state else None
        metric_class = __loss_map__.get(criterion_name(criterion))
        self._resolved = True
        if metric_class is None:
            return
        self.metric = metric_class()
        self.name = self.metric.name
        if self._eval_key is not _UNSET:
            self.metric.eval(data_key=self._eval_key)

    def reset(self, state: Any) -> None:
        if not self._resolved:
            self._resolve(state)
            if self._pending_state is not None:
                self._apply(self._pending_state)
                self._pending_state = None
        self.metric.reset(state)

    def state_dict(self) -> dict:
        """The chosen metric's name and state (``{}`` before the choice, unless a state is waiting for it)."""
        if self._pending_state is not None:
            return self._pending_state
        if not self._resolved:
            return {}
        return {"name": self.metric.name, "metric": self.metric.state_dict()}

    def load_state_dict(self, state_dict: dict) -> DefaultAccuracy:
        """Load into the chosen metric now, or keep the state until the first :meth:`reset` chooses it.

        Raises:
            ValueError: If the state was saved for another metric than the one the criterion chooses
                (raised by :meth:`reset` when the state was loaded before the choice).
        """
        if not state_dict:
            return self
        if self._resolved:
            self._apply(state_dict)
        else:
            self._pending_state = state_dict
        return self

    def _apply(self, state_dict: dict) -> None:
        if state_dict["name"] != self.metric.name:
            raise ValueError(
                f"the accuracy state was saved for {state_dict['name']!r}, but this trial's criterion makes 'acc' "
                f"report {self.metric.name!r}; resume with the criterion the state was saved with"
            )
        self.metric.load_state_dict(state_dict["metric"])

    def process(self, *args: Any) -> Any:
        return self.metric.process(*args)

    def process_final(self, *args: Any) -> Any:
        return self.metric.process_final(*args)

    def train(self) -> None:
        self._eval_key = _UNSET
        self.metric.train()

    def eval(self, data_key: Any = None) -> None:
        self._eval_key = data_key
        self.metric.eval(data_key=data_key)
