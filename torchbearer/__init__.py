"""torchbearer: a model fitting library for PyTorch.

``Trial`` runs the fitting loop; every part of it stays open to change through the mutable state
dict that callbacks, metrics and closures share.
"""

from torchbearer import state  # noqa: I001  (state must load before bases: keys are metrics)
from torchbearer.bases import Callback, Metric, base_closure, cite, enable_grad, no_grad, standard_closure
from torchbearer.state import *  # noqa: F403
from torchbearer.state import State, StateKey, state_key
from torchbearer.version import __version__

from torchbearer import magics, metrics, callbacks  # noqa: E402
from torchbearer.trial import (  # noqa: E402
    CallbackListInjection,
    MockModel,
    MockOptimizer,
    Trial,
    deep_to,
    get_printer,
    inject_callback,
    inject_printer,
    inject_sampler,
    load_batch_infinite,
    load_batch_none,
    load_batch_predict,
    load_batch_standard,
    update_device_and_dtype,
)
from torchbearer.callbacks import CallbackList  # noqa: E402
from torchbearer import cv_utils  # noqa: E402
from torchbearer.callbacks import AggregatePredictions, Tqdm  # noqa: E402  (0.5's star import exposed these)
from torchbearer.metrics import MetricList  # noqa: E402
