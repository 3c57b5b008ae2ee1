"""``PyCM``: a confusion matrix over a whole pass, built with the ``pycm`` package."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

import torchbearer
from torchbearer.bases import Callback
from torchbearer.distributed import cross_rank, is_rank_zero

Handler = Callable[[Any, dict], None]


def _import_confusion_matrix() -> Any:
    try:
        from pycm import ConfusionMatrix
    except ImportError as error:
        raise ImportError("PyCM needs pycm; install it with: pip install torchbearer[pycm]") from error
    return ConfusionMatrix


def _import_pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("PyCM.to_pyplot needs matplotlib; install it with: pip install torchbearer[plots]") from error
    return plt


def _state_fields(state: dict) -> dict[str, Any]:
    """The state as ``{key text: value}``, for ``str.format`` patterns such as ``'cm_{epoch}'``."""
    return {str(key): value for key, value in state.items()}


def _check_saved(result: dict, filename: str) -> None:
    """pycm reports write failures in its return value instead of raising; raise them."""
    if not result.get("Status", False):
        raise OSError(f"PyCM: could not write '{filename}': {result.get('Message')}")


def _plot(cm: Any, title: str, normalize: bool, cmap: Any) -> None:
    plt = _import_pyplot()
    matrix = cm.to_array(normalized=normalize)
    classes = [str(label) for label in cm.classes]
    figure, axes = plt.subplots()
    image = axes.imshow(matrix, interpolation="nearest", cmap=cmap if cmap is not None else plt.cm.Blues)
    figure.colorbar(image, ax=axes)
    ticks = list(range(len(classes)))
    axes.set(xticks=ticks, yticks=ticks, xticklabels=classes, yticklabels=classes)
    axes.set(xlabel="Predicted", ylabel="Actual", title=title)
    threshold = matrix.max() / 2
    for row in ticks:
        for column in ticks:
            value = matrix[row, column]
            text = f"{value:.2f}" if normalize else str(int(value))
            colour = "white" if value > threshold else "black"
            axes.text(column, row, text, ha="center", va="center", color=colour)
    figure.tight_layout()
    plt.show()


class PyCM(Callback):
    """Build a ``pycm.ConfusionMatrix`` over a whole pass and hand it to handlers.

    Choose the passes with :meth:`on_train`, :meth:`on_val` and :meth:`on_test`, and what to do with
    each matrix with the ``to_*`` methods or :meth:`with_handler`. Every method returns ``self``.
    The matrix compares the targets with ``argmax(y_pred, 1)``. Predictions stay on the device
    during the pass and are moved to the host once, at its end.

    Args:
        **kwargs: Passed to ``pycm.ConfusionMatrix`` (e.g. ``digit=3``).

    Raises:
        ImportError: If pycm is not installed.

    Example:
        >>> cm = PyCM().on_val().to_console().to_pycm_file('cm_{epoch}')  # doctest: +SKIP
        >>> Trial(model, optimizer, loss, callbacks=[cm]).with_generators(train, val).run(5)  # doctest: +SKIP
    """

    def __init__(self, **kwargs: Any) -> None:
        self._confusion_matrix = _import_confusion_matrix()
        self.kwargs = kwargs
        self._handlers: list[Handler] = []
        self._passes: set[str] = set()
        self._collecting = False
        self._predictions: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def on_train(self) -> PyCM:
        """Make a matrix for every training pass."""
        self._passes.add(str(torchbearer.TRAIN_DATA))
        return self

    def on_val(self) -> PyCM:
        """Make a matrix for every validation pass."""
        self._passes.add(str(torchbearer.VALIDATION_DATA))
        return self

    def on_test(self) -> PyCM:
        """Make a matrix for every test pass (``evaluate(data_key=TEST_DATA)``, ``predict`` with targets)."""
        self._passes.add(str(torchbearer.TEST_DATA))
        return self

    def with_handler(self, handler: Handler) -> PyCM:
        """Call ``handler(confusion_matrix, state)`` with every matrix made."""
        self._handlers.append(handler)
        return self

    def to_state(self, key: str) -> PyCM:
        """Store every matrix in ``state[key]``."""

        def handler(cm: Any, state: dict) -> None:
            state[key] = cm

        return self.with_handler(handler)

    def to_console(self) -> PyCM:
        """Print every matrix with its statistics."""
        return self.with_handler(lambda cm, state: print(cm))

    def _to_file(self, method: str, filename: str, *args: Any, **kwargs: Any) -> PyCM:
        def handler(cm: Any, state: dict) -> None:
            name = filename.format(**_state_fields(state))
            _check_saved(getattr(cm, method)(name, *args, **kwargs), name)

        return self.with_handler(handler)

    def to_pycm_file(self, filename: str, *args: Any, **kwargs: Any) -> PyCM:
        """Save every matrix with ``cm.save_stat``; ``filename`` is formatted with the state (``'cm_{epoch}'``)."""
        return self._to_file("save_stat", filename, *args, **kwargs)

    def to_html_file(self, filename: str, *args: Any, **kwargs: Any) -> PyCM:
        """Save every matrix with ``cm.save_html`` (file name formatted with the state)."""
        return self._to_file("save_html", filename, *args, **kwargs)

    def to_csv_file(self, filename: str, *args: Any, **kwargs: Any) -> PyCM:
        """Save every matrix with ``cm.save_csv`` (file name formatted with the state)."""
        return self._to_file("save_csv", filename, *args, **kwargs)

    def to_obj_file(self, filename: str, *args: Any, **kwargs: Any) -> PyCM:
        """Save every matrix with ``cm.save_obj`` (file name formatted with the state)."""
        return self._to_file("save_obj", filename, *args, **kwargs)

    def to_pyplot(self, normalize: bool = False, title: str = "Confusion matrix", cmap: Any = None) -> PyCM:
        """Plot every matrix with matplotlib and call ``plt.show()``.

        Args:
            normalize: Divide each row (actual class) by its total.
            title: Figure title, formatted with the state (``'Epoch {epoch}'``).
            cmap: A matplotlib colour map; default ``Blues``.
        """

        def handler(cm: Any, state: dict) -> None:
            _plot(cm, title.format(**_state_fields(state)), normalize, cmap)

        return self.with_handler(handler)

    def _begin(self, data_key: Any) -> None:
        self._collecting = str(data_key) in self._passes
        self._predictions, self._targets = [], []

    def _collect(self, state: dict) -> None:
        if not self._collecting or state.get(torchbearer.Y_TRUE) is None:
            return
        with torch.no_grad():
            targets = state[torchbearer.Y_TRUE].detach()
            if targets.dim() == 2:  # one-hot or soft targets
                targets = targets.argmax(1)
            self._predictions.append(state[torchbearer.Y_PRED].detach().argmax(1))
            self._targets.append(targets)

    def _finish(self, state: dict) -> None:
        if not self._collecting:
            return
        self._collecting = False
        predicted, actual = self._classes(state)
        self._predictions, self._targets = [], []
        if not is_rank_zero():  # in a distributed run rank zero makes the matrix of every rank's samples
            return
        if not actual:
            warnings.warn("PyCM: the pass had no batches with targets, so no confusion matrix was made", stacklevel=2)
            return
        cm = self._confusion_matrix(actual_vector=actual, predict_vector=predicted, **self.kwargs)
        for handler in self._handlers:
            handler(cm, state)

    def _classes(self, state: dict) -> tuple[list, list]:
        """The predicted and actual classes of the pass (of every rank, in a distributed Trial)."""
        if not self._targets:
            predicted, actual = [], []
        else:  # once per pass: the host-device sync that pycm needs
            predicted = torch.cat(self._predictions).cpu().tolist()
            actual = torch.cat(self._targets).cpu().tolist()
        ranks = cross_rank(state)
        if ranks is None:
            return predicted, actual
        parts = ranks.gather((predicted, actual))
        return [item for part in parts for item in part[0]], [item for part in parts for item in part[1]]

    def on_start_training(self, state: dict) -> None:
        self._begin(torchbearer.TRAIN_DATA)

    def on_step_training(self, state: dict) -> None:
        self._collect(state)

    def on_end_training(self, state: dict) -> None:
        self._finish(state)

    def on_start_validation(self, state: dict) -> None:
        data = state[torchbearer.DATA]
        self._begin(data if data in (torchbearer.VALIDATION_DATA, torchbearer.TEST_DATA) else None)

    def on_step_validation(self, state: dict) -> None:
        self._collect(state)

    def on_end_validation(self, state: dict) -> None:
        self._finish(state)
