"""``UnpackState``: give a model chosen state entries as one dict, and merge dict outputs back."""

from __future__ import annotations

from collections.abc import Sequence

from torchbearer.bases import Callback
from torchbearer.state import Y_PRED, X


class UnpackState(Callback):
    """Pass selected state entries to the model as a dict, and spread a dict output into the state.

    Useful for models that cannot take the state itself (e.g. inside ``DataParallel``) but need
    more than the input. Before each forward pass ``X`` is replaced by ``{key: state[key] for key
    in keys}`` (unless ``keys`` is just ``[X]``). If the model returns a dict and
    ``output_to_state`` is true, every entry is written into the state and ``Y_PRED`` becomes the
    dict's ``Y_PRED`` entry (or the whole dict if it has none).

    Args:
        keys: The state keys to pass; ``X`` is inserted first when missing (a given list is changed
            in place). Default: ``[X]``.
        output_to_state: Merge dict outputs into the state.

    Example:
        >>> unpacker = UnpackState(keys=[torchbearer.X, torchbearer.Y_TRUE])
        >>> # model.forward(self, x): x == {X: batch, Y_TRUE: targets}; may return {Y_PRED: out, MU: mu}
    """

    def __init__(self, keys: Sequence | None = None, output_to_state: bool = True) -> None:
        self.keys = keys if keys is not None else [X]
        if not isinstance(self.keys, list):
            self.keys = list(self.keys)
        if X not in self.keys:
            self.keys.insert(0, X)
        self.output_to_state = output_to_state

    def on_sample(self, state: dict) -> None:
        if self.keys != [X]:
            state[X] = {key: state[key] for key in self.keys}

    def on_sample_validation(self, state: dict) -> None:
        self.on_sample(state)

    def on_forward(self, state: dict) -> None:
        outputs = state[Y_PRED]
        if self.output_to_state and isinstance(outputs, dict):
            state.update(outputs)
            state[Y_PRED] = outputs.get(Y_PRED, outputs)

    def on_forward_validation(self, state: dict) -> None:
        self.on_forward(state)
