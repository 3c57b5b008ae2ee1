"""Metrics: built-in accuracies and losses, the statistics that summarise them, and the tools to build more.

Strings such as ``'acc'`` and ``'loss'`` in ``Trial(metrics=[...])`` are looked up in a registry
filled by the modules imported here. Metric values stay on the device during a pass; the Trial
turns them into Python numbers at its end.
"""

from torchbearer.bases import Metric
from torchbearer.metrics.aggregators import Mean, RunningMean, RunningMetric, Std, Var
from torchbearer.metrics.decorators import default_for_key, lambda_metric, mean, running_mean, std, to_dict, var
from torchbearer.metrics.default import DefaultAccuracy
from torchbearer.metrics.lr import LR
from torchbearer.metrics.masked import Masked
from torchbearer.metrics.metrics import AdvancedMetric, MetricList, MetricTree, add_default, feed_group, get_default
from torchbearer.metrics.primitives import (
    BinaryAccuracy,
    CategoricalAccuracy,
    Epoch,
    Loss,
    MeanSquaredError,
    TopKCategoricalAccuracy,
)
from torchbearer.metrics.roc_auc_score import RocAucScore
from torchbearer.metrics.timer import TimerMetric
from torchbearer.metrics.wrappers import BatchLambda, EpochLambda, ToDict

__all__ = [
    "LR",
    "AdvancedMetric",
    "BatchLambda",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "DefaultAccuracy",
    "Epoch",
    "EpochLambda",
    "Loss",
    "Masked",
    "Mean",
    "MeanSquaredError",
    "Metric",
    "MetricList",
    "MetricTree",
    "RocAucScore",
    "RunningMean",
    "RunningMetric",
    "Std",
    "TimerMetric",
    "ToDict",
    "TopKCategoricalAccuracy",
    "Var",
    "add_default",
    "default_for_key",
    "feed_group",
    "get_default",
    "lambda_metric",
    "mean",
    "running_mean",
    "std",
    "to_dict",
    "var",
]
