"""``'roc_auc'``: area under the ROC curve over the pass, computed by scikit-learn."""

from __future__ import annotations

from collections.abc import Callable

import torch

from torchbearer.metrics.decorators import default_for_key, to_dict
from torchbearer.metrics.wrappers import EpochLambda


def _sklearn_roc_auc_score() -> Callable[..., float]:
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError as error:
        raise ImportError(
            "RocAucScore ('roc_auc') needs scikit-learn; install it with: pip install torchbearer[sklearn]"
        ) from error
    return roc_auc_score


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    one_hot = torch.zeros(labels.size(0), classes, device=labels.device)
    return one_hot.scatter_(1, labels.long().reshape(-1, 1), 1.0)


@default_for_key("roc_auc_score")
@default_for_key("roc_auc")
@to_dict
class RocAucScore(EpochLambda):
    """ROC AUC of all predictions against all targets seen in the pass (``sklearn.metrics.roc_auc_score``).

    Reported as ``roc_auc_score`` on training batches 0, 50, 100, ... and at the end of the pass,
    ``val_roc_auc_score`` in evaluation. Each computation copies everything seen so far to the host
    (scikit-learn works on NumPy arrays): a device sync every 50 batches and once per pass.

    A prediction of one score per sample (shape ``(N,)`` or ``(N, 1)``, e.g. a logit for
    ``BCEWithLogitsLoss``) is scored against binary targets as they are; for ``(N, C)`` predictions the
    class-index targets are one-hot encoded into ``C == one_hot_classes`` columns.

    Args:
        one_hot_labels: If True, class-index targets are one-hot encoded before scoring.
        one_hot_offset: Subtracted from the targets before one-hot encoding (e.g. 1 for labels from 1).
        one_hot_classes: Number of one-hot columns.

    Raises:
        ImportError: If scikit-learn is not installed.
    """

    def __init__(self, one_hot_labels: bool = True, one_hot_offset: int = 0, one_hot_classes: int = 10) -> None:
        roc_auc_score = _sklearn_roc_auc_score()

        def score(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
            if y_pred.dim() < 2 or y_pred.shape[1] == 1:  # one score per sample: binary targets, scored as they are
                y_pred, y_true = y_pred.reshape(-1), y_true.reshape(-1)
            elif one_hot_labels:
                if y_pred.shape[1] != one_hot_classes:
                    raise ValueError(
                        f"roc_auc: the predictions have {y_pred.shape[1]} columns but targets are one-hot encoded "
                        f"into {one_hot_classes}; use RocAucScore(one_hot_classes={y_pred.shape[1]})"
                    )
                y_true = _one_hot(y_true - one_hot_offset, one_hot_classes)
            return float(roc_auc_score(y_true.cpu().numpy(), y_pred.float().cpu().numpy()))

        super().__init__("roc_auc_score", score, running=True, step_size=50)
