"""``'lr'``: the optimizer's learning rate, reported on every training batch."""

from __future__ import annotations

from typing import Any

from torchbearer.metrics.decorators import default_for_key, to_dict
from torchbearer.metrics.metrics import AdvancedMetric
from torchbearer.state import OPTIMIZER


def _learning_rates(state: Any) -> Any:
    rates = [group.get("lr") for group in state[OPTIMIZER].param_groups]
    return rates[0] if len(rates) == 1 else rates


@default_for_key("lr")
@to_dict
class LR(AdvancedMetric):
    """The learning rate of ``state[OPTIMIZER]`` in training: a number for one parameter group, else a list.

    Reported as ``lr`` on every training batch and at the end of the training pass; nothing in
    evaluation.
    """

    def __init__(self) -> None:
        super().__init__("lr")

    def process_train(self, *args: Any) -> Any:
        return _learning_rates(args[0])

    def process_final_train(self, *args: Any) -> Any:
        return _learning_rates(args[0])
