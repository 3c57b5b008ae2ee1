"""``Trial``: what users call. Builder methods configure the state; ``run``, ``evaluate``,
``predict`` and ``replay`` drive the passes in :mod:`torchbearer.loop`."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchbearer import checks, distributed, prefetch
from torchbearer.bases import Callback, cite, standard_closure
from torchbearer.callbacks.aggregate_predictions import AggregatePredictions
from torchbearer.callbacks.callbacks import CallbackList
from torchbearer.callbacks.evaluation import EVALUATION
from torchbearer.calling import always_pass_state
from torchbearer.compiling import TrialCompilation
from torchbearer.devices import deep_to, unwrap_model, update_device_and_dtype
from torchbearer.errors import ConfigurationError, TorchbearerWarning
from torchbearer.injection import (
    CallbackListInjection,
    MockModel,
    MockOptimizer,
    ZeroLoss,
    get_printer,
    inject_callback,
    inject_printer,
    inject_sampler,
)
from torchbearer.loading import (
    load_batch_infinite,
    load_batch_none,
    load_batch_predict,
    load_batch_standard,
)
from torchbearer.loop import set_training, train_pass, validation_pass
from torchbearer.metrics import MetricList
from torchbearer.replay import replay_history
from torchbearer.resume import ResumeBookkeeping
from torchbearer.state import (
    ACCUMULATION_STEPS,
    AUTOCAST_DTYPE,
    BACKWARD_ARGS,
    CALLBACK_LIST,
    CRITERION,
    DATA,
    DATA_TYPE,
    DEVICE,
    EPOCH,
    FINAL_PREDICTIONS,
    GENERATOR,
    GRAD_SCALER,
    HISTORY,
    INF_TRAIN_LOADING,
    ITERATOR,
    LOADER,
    MAX_EPOCHS,
    METRIC_LIST,
    METRICS,
    MODEL,
    OPTIMIZER,
    PREFETCH,
    SAMPLER,
    SELF,
    STEPS,
    STOP_TRAINING,
    TEST_DATA,
    TEST_GENERATOR,
    TEST_STEPS,
    TRAIN_DATA,
    TRAIN_GENERATOR,
    TRAIN_STEPS,
    VALIDATION_DATA,
    VALIDATION_GENERATOR,
    VALIDATION_STEPS,
    RunState,
    State,
    StateKey,
)
from torchbearer.summary import model_summary
from torchbearer.trial_data import DATA_KEYS, SHORT_NAMES, DataBuilders
from torchbearer.trial_options import StepOptions

__all__ = [
    "Trial",
    "deep_to",
    "load_batch_standard",
    "load_batch_predict",
    "load_batch_none",
    "load_batch_infinite",
    "update_device_and_dtype",
    "MockModel",
    "MockOptimizer",
    "CallbackListInjection",
    "get_printer",
    "inject_printer",
    "inject_sampler",
    "inject_callback",
]


@cite(
    """@article{2018torchbearer,
  title={Torchbearer: A Model Fitting Library for PyTorch},
  author={Harris, Ethan and Painter, Matthew and Hare, Jonathon},
  journal={arXiv preprint arXiv:1809.03363},
  year={2018}
}"""
)
class Trial(DataBuilders, StepOptions):
    """Fits a model: holds the model, optimizer, criterion, metrics and callbacks in a state dict.

    The builder methods for data (``with_train_data``, ``for_steps``, ...) come from
    :class:`~torchbearer.trial_data.DataBuilders`, those for the step (``with_precision``, ``with_compile``,
    ...) from :class:`~torchbearer.trial_options.StepOptions`; this class holds the fitting itself.

    Args:
        model: The module (or any callable) to fit; ``None`` gives a model that returns ``None``.
        optimizer: A torch optimizer; ``None`` gives one whose ``step`` only runs the closure.
        criterion: ``f(y_pred, y_true)`` or ``f(state)``; ``None`` gives a zero loss that callbacks add to.
        metrics: Metrics and/or metric names (``'acc'``, ``'loss'``, ...).
        callbacks: Callbacks, called in order after the progress printer.
        verbose: 2 for a progress bar per pass, 1 for one bar over epochs, 0 for silence.
        pass_state: Always call the model as ``model(*x, state=state)``.

    Raises:
        ConfigurationTypeError: (a ``TypeError``) A class where an instance is needed, an optimizer that
            is not one (arguments out of order), a criterion that is not callable, a ``verbose`` that is
            not an int, or metrics / callbacks that are not lists of metrics / callbacks.
        UnknownMetricError: (a ``KeyError``) A metric name that is not registered.

    Warns:
        TorchbearerWarning: The optimizer holds none of the model's parameters.

    Example:
        >>> trial = Trial(model, optimizer, nn.CrossEntropyLoss(), metrics=['acc', 'loss'])  # doctest: +SKIP
        >>> history = trial.with_generators(train_loader, val_loader).run(epochs=10)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Callable[..., Any] | None,
        optimizer: torch.optim.Optimizer | None = None,
        criterion: Callable[..., Any] | StateKey | None = None,
        metrics: Sequence[Any] = [],
        callbacks: Sequence[Callback] = [],
        verbose: int = 2,
        *,
        pass_state: bool = False,
    ) -> None:
        checks.check_trial_arguments(model, optimizer, criterion, verbose)
        checks.warn_if_optimizer_misses_model(model, optimizer)
        if model is not None and pass_state:
            always_pass_state(model)
        self.verbose = verbose
        self.closure = standard_closure()
        self._compilation: TrialCompilation | None = None  # set by with_compile
        self.state = State()
        self.state.update(
            {
                MODEL: model,
                CRITERION: criterion,
                OPTIMIZER: optimizer if optimizer is not None else MockOptimizer(),
                METRIC_LIST: MetricList(metrics),
                CALLBACK_LIST: CallbackList(callbacks, warn_on_nan_loss=True),
                DEVICE: "cpu",
                DATA_TYPE: torch.float32,
                SELF: self,
                HISTORY: [],
                BACKWARD_ARGS: {},
                TRAIN_GENERATOR: None,
                VALIDATION_GENERATOR: None,
                TEST_GENERATOR: None,
                TRAIN_STEPS: None,
                VALIDATION_STEPS: None,
                TEST_STEPS: None,
                TRAIN_DATA: None,
                VALIDATION_DATA: None,
                TEST_DATA: None,
                INF_TRAIN_LOADING: False,
                LOADER: None,
                AUTOCAST_DTYPE: None,
                GRAD_SCALER: None,
                ACCUMULATION_STEPS: 1,
                PREFETCH: False,
            }
        )
        if criterion is None:
            self.state[CRITERION] = ZeroLoss()
        self._own_closure = False  # with_closure: the closure may step optimizers of its own
        self._checked_first_pass = False  # whether the first training pass was checked for a loss that stayed 0
        self._train_iterator = None
        self._warned_unconfigured = False
        self._warned_without_data: set = set()  # (method, data key) pairs already warned about
        self._resume = ResumeBookkeeping()
        self.state[CALLBACK_LIST].on_init(self.state)

    def __repr__(self) -> str:
        """One line: the parts by class, how many metrics and callbacks, the epochs trained and the device."""
        return (
            f"Trial(model={_short_name(self.state[MODEL])}, optimizer={_short_name(self.state[OPTIMIZER])}, "
            f"criterion={_short_name(self.state[CRITERION])}, metrics={len(self.state[METRIC_LIST].metric_list)}, "
            f"callbacks={len(self.state[CALLBACK_LIST])}, epochs={len(self.state[HISTORY])}, "
            f"device={str(self.state[DEVICE])!r})"
        )

    def __str__(self) -> str:
        """A section for each part: 0.5's layout, with 0.5's ``OPTIMZER`` spelled right."""
        sections = [
            ("optimizer", _shown(self.state[OPTIMIZER])),
            ("criterion", self.state[CRITERION]),
            ("metrics", self.state[METRIC_LIST]),
            ("callbacks", self.state[CALLBACK_LIST]),
            ("model", _shown(self.state[MODEL])),
        ]
        return "".join(f"{(' ' + title.upper() + ' ').center(52, '-')}\n{value}\n\n" for title, value in sections)

    # ----------------------------------------------------------------------------------- passes
    def _prepare_pass(self, state: dict, data_key, default_loader) -> None:
        """Point the state at one data set: its generator, steps, batch loader and a fresh iterator."""
        generator_key, steps_key, _ = DATA_KEYS[data_key]
        generator, steps = self.state[generator_key], self.state[steps_key]
        steps = 0 if steps is None else steps
        if steps == -1:
            warnings.warn(
                "Trial is set to run indefinitely. Make sure you have some method to terminate safely.", stacklevel=4
            )
        infinite_training = data_key == TRAIN_DATA and self.state[INF_TRAIN_LOADING]
        if self.state[LOADER] is not None:
            loader = self.state[LOADER]
        elif generator is None:
            loader = default_loader if default_loader is load_batch_none else load_batch_none
        else:
            loader = default_loader
        if generator is not None and (steps == -1 or infinite_training or steps > _length(generator, steps)):
            loader = load_batch_infinite(loader)
        for target in (self.state, state):
            target[DATA], target[GENERATOR], target[STEPS], target[SAMPLER] = data_key, generator, steps, loader

    def _iterator(self, generator, keep_across_epochs: bool = False):
        """A fresh iterator over ``generator``, or the kept one for ``with_inf_train_loader``."""
        if generator is None:
            return None
        if keep_across_epochs:
            if self._train_iterator is None:
                self._train_iterator = prefetch.iterate(generator, self.state)
            return self._train_iterator
        return prefetch.iterate(generator, self.state)

    def _call_state(self, max_epochs: int) -> State:
        state = RunState()
        state.update({EPOCH: 0, MAX_EPOCHS: max_epochs, STOP_TRAINING: False})
        state.update(self.state)
        return state

    def _has(self, data_key) -> bool:
        generator_key, steps_key, _ = DATA_KEYS[data_key]
        return self.state[generator_key] is not None or self.state[steps_key] is not None

    def _check_model(self, stacklevel: int) -> None:
        """Warn (at the user's call, ``stacklevel`` frames up) and use a ``MockModel`` when there is no model."""
        if self.state[MODEL] is None or not callable(self.state[MODEL]):
            warnings.warn(
                "The Model is None or not callable which may cause issues if not deliberate", stacklevel=stacklevel
            )
            self.state[MODEL] = MockModel()

    @inject_printer()
    def run(self, epochs: int = 1, verbose: int = -1) -> list[dict[str, Any]]:
        """Train (and validate) up to epoch ``epochs``, continuing from the epochs already run.

        Args:
            epochs: The epoch number to stop at (a target, not an increment).
            verbose: 2, 1 or 0 as in the constructor; -1 uses the trial's setting.

        Returns:
            The history: one dict of metric values per epoch (the same list grows across calls).

        Raises:
            ConfigurationError: ``epochs`` is not an int, or is negative.

        Warns:
            TorchbearerWarning: ``epochs`` is already reached (nothing to train: say how to train more);
                training with no optimizer; a loss that stayed the default zero (no criterion, nothing added).
        """
        if not isinstance(epochs, int) or isinstance(epochs, bool):
            raise ConfigurationError(f"run(epochs) needs an int number of epochs, got {epochs!r}")
        if epochs < 0:
            raise ConfigurationError(
                f"run(epochs={epochs}): epochs is the epoch to train up to, so it cannot be negative. To train until "
                "a callback stops the run, give an upper bound, e.g. run(epochs=1000) with EarlyStopping"
            )
        self._check_model(stacklevel=4)
        state = self._call_state(epochs)
        history = self.state[HISTORY]
        if not (self._has(TRAIN_DATA) or self._has(VALIDATION_DATA)):
            if not self._warned_unconfigured:
                warnings.warn(
                    "run() did nothing: no training or validation data or steps are configured. Call "
                    "with_train_generator / with_train_data / with_generators, or for_train_steps(N) to train "
                    "without data",
                    stacklevel=3,
                )
                self._warned_unconfigured = True
            return history
        self._warn_if_already_trained(epochs, len(history))
        if self._has(TRAIN_DATA):
            checks.warn_if_nothing_steps(self.state[MODEL], self.state[OPTIMIZER], self._own_closure, stacklevel=4)
        self._resume.apply_pending(self.state)
        self._resume.running_state = state
        try:
            with _cleanup_on_failure(state), distributed.handle_preemption(state, self._resume.resumable):
                state[CALLBACK_LIST].on_start(state)
                for epoch in range(len(history), epochs):
                    state[EPOCH] = epoch
                    if self._run_epoch(state, history):
                        break
                state[CALLBACK_LIST].on_end(state)
        finally:
            self._resume.end_run()
        return history

    @staticmethod
    def _warn_if_already_trained(epochs: int, done: int) -> None:
        """``run(epochs)`` trains up to epoch ``epochs``: say so when that is already reached."""
        if epochs > done:
            return
        more = max(epochs, 1)
        warnings.warn(
            f"run(epochs={epochs}) trains nothing: this trial has already trained {done} epoch{'s' * (done != 1)}; "
            f"run(epochs={done + more}) trains {more} more (epochs is the epoch to train up to, not a number of "
            "epochs to add)",
            TorchbearerWarning,
            stacklevel=4,
        )

    def _run_epoch(self, state: dict, history: list) -> bool:
        """One epoch: training pass, validation pass, history record. Returns True to stop."""
        state.update(self.state)
        callbacks = state[CALLBACK_LIST]
        callbacks.on_start_epoch(state)
        self._prepare_pass(state, TRAIN_DATA, load_batch_standard)
        first_batch = self._start_training_iterator(state)
        pass_closure = contextlib.nullcontext(self.closure)
        if self._compilation is not None:  # with_compile: a compiled region for the step when no hook runs inside it
            pass_closure = self._compilation.training_pass(state, self.closure, not self._own_closure)
        self._resume.training_pass_active = True
        with pass_closure as closure:
            train_pass(state, closure, first_batch)
        self._resume.training_pass_active = False
        if not self._checked_first_pass:
            self._checked_first_pass = True
            checks.warn_if_loss_stayed_zero(state, stacklevel=5)
        if distributed.agree_to_stop(state):
            return True
        final_metrics = state[METRICS]
        if self._has(VALIDATION_DATA):
            state.update(self.state)
            self._prepare_pass(state, VALIDATION_DATA, load_batch_standard)
            state[ITERATOR] = self._iterator(state[GENERATOR])
            validation_pass(state)
            final_metrics = {**final_metrics, **state[METRICS]}
            set_training(state[MODEL], True)
            state[METRIC_LIST].train()
        state[METRICS] = final_metrics
        callbacks.on_end_epoch(state)
        history.append({**state[METRICS], "train_steps": self.state[TRAIN_STEPS],
                        "validation_steps": self.state[VALIDATION_STEPS]})  # fmt: skip
        callbacks.on_checkpoint(state)
        return distributed.agree_to_stop(state)

    @inject_printer(validation_label_letter="e")
    @inject_sampler(VALIDATION_DATA, load_batch_standard)
    def evaluate(self, verbose: int = -1, data_key: StateKey | None = None) -> dict[str, Any]:
        """Evaluate on one data set (default validation) and merge the values into the last history record.

        Returns:
            The metric values, prefixed ``val_``, ``test_`` or ``train_`` by data set; ``{}`` with no data
            (and, the first time, a ``TorchbearerWarning`` naming ``with_val_data``).
        """
        if not self._has(VALIDATION_DATA if data_key is None else data_key):
            self._warn_without_data("evaluate", VALIDATION_DATA if data_key is None else data_key, "{}", stacklevel=5)
            return {}
        self._check_model(stacklevel=5)
        state = self._call_state(1)
        with _cleanup_on_failure(state):
            self._evaluation_pass(state)
            if self.state[HISTORY]:
                self.state[HISTORY][-1].update(state[METRICS])
            state[CALLBACK_LIST].on_end(state)
        return state[METRICS]

    @inject_printer(validation_label_letter="p")
    @inject_sampler(TEST_DATA, load_batch_predict)
    @inject_callback(AggregatePredictions())
    def predict(self, verbose: int = -1, data_key: StateKey | None = None) -> torch.Tensor | list:
        """Run the model over a data set (default test) and return its outputs concatenated on dim 0.

        Returns:
            A tensor, or a list of per-batch outputs when they cannot be concatenated; ``[]`` with no data
            (and, the first time, a ``TorchbearerWarning`` naming ``with_test_data``).
        """
        if not self._has(TEST_DATA if data_key is None else data_key):
            self._warn_without_data("predict", TEST_DATA if data_key is None else data_key, "[]", stacklevel=6)
            return []
        self._check_model(stacklevel=6)
        state = self._call_state(1)
        with _cleanup_on_failure(state):
            self._evaluation_pass(state)
            state[CALLBACK_LIST].on_end(state)
        return state[FINAL_PREDICTIONS]

    def _start_training_iterator(self, state: dict) -> int:
        """Create the epoch's training iterator (replayed to the saved batch when resuming mid-epoch).

        Returns:
            The first batch index to train on (0 unless resuming mid-epoch).
        """
        return self._resume.start_training_iterator(
            state, lambda: self._iterator(state[GENERATOR], self.state[INF_TRAIN_LOADING])
        )

    def _warn_without_data(self, method: str, data_key: Any, result: str, stacklevel: int) -> None:
        """Warn once per method and data set that a call had no data to run on (``stacklevel``: the user's call)."""
        if (method, data_key) in self._warned_without_data:
            return
        self._warned_without_data.add((method, data_key))
        label = DATA_KEYS[data_key][2]
        short = SHORT_NAMES[label]
        warnings.warn(
            f"{method}() has no {label} data, so it returned {result}: give data with with_{short}_data / "
            f"with_{short}_generator (or for_{short}_steps(N) to run without data), or choose another data set "
            "with data_key=",
            TorchbearerWarning,
            stacklevel=stacklevel,
        )

    def _evaluation_pass(self, state: dict) -> None:
        state[EVALUATION] = SHORT_NAMES[DATA_KEYS[state[DATA]][2]]  # loggers record it at the trial's epoch
        callbacks = state[CALLBACK_LIST]
        callbacks.on_start(state)
        callbacks.on_start_epoch(state)
        state[ITERATOR] = self._iterator(state[GENERATOR])
        validation_pass(state)
        callbacks.on_end_epoch(state)

    def replay(self, callbacks: Sequence[Callback] | None = None, verbose: int = 2, one_batch: bool = False) -> Trial:
        """Re-drive callbacks (progress bars, loggers) from the stored history, without touching model or data.

        Args:
            callbacks: Callbacks to replay to (the list is not modified).
            verbose: Printer verbosity for the replay (no -1 here).
            one_batch: Call the batch hooks once per pass instead of once per recorded step.
        """
        replay_history(self.state, callbacks, verbose, one_batch)
        return self

    def summary(self, input_size: Any = None, input_data: Any = None, **kwargs: Any) -> Any:
        """Show the model's layers with their parameters and output shapes for one batch (needs ``torchinfo``).

        The batch is the input of the Trial's first training batch (else validation, else test), or the
        ``input_data`` or ``input_size`` given. Neither the model (run in evaluation mode, without gradients)
        nor the random state (which a shuffling loader draws from) is changed, so training goes on as without it.

        Args:
            input_size: The input's shape with its batch dimension, e.g. ``(32, 784)``; a list of shapes for
                several inputs. Inputs are made in the Trial's dtype.
            input_data: The model's positional arguments, e.g. ``[x]``, or keyword arguments as a dict.
            **kwargs: Passed to ``torchinfo.summary``: ``depth``, ``col_names``, ``verbose``, ...

        Returns:
            torchinfo's ``ModelStatistics``, printed (outside notebooks) unless ``verbose=0``; its ``str`` is
            the table, and ``total_params``, ``trainable_params`` and ``summary_list`` hold the numbers.

        Raises:
            ImportError: torchinfo is not installed (``pip install torchbearer[summary]``).
            ConfigurationError: The model is not an ``nn.Module``, or there is no data and no input given.

        Example:
            >>> trial.with_train_data(x, y, batch_size=32).summary()  # doctest: +SKIP
            >>> Trial(model).summary(input_size=(1, 3, 224, 224), depth=2)  # doctest: +SKIP
        """
        return model_summary(self.state, input_size, input_data, **kwargs)

    # ----------------------------------------------------------------------------------- modes and devices
    def train(self) -> Trial:
        """Put the model and metrics in training mode."""
        set_training(self.state[MODEL], True)
        self.state[METRIC_LIST].train()
        return self

    def eval(self) -> Trial:
        """Put the model and metrics in evaluation mode."""
        set_training(self.state[MODEL], False)
        if DATA in self.state:
            self.state[METRIC_LIST].eval(data_key=self.state[DATA])
        else:
            self.state[METRIC_LIST].eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> Trial:
        """Move the model, the optimizer's state and future batches (``trial.to('cuda')``, ``.to(torch.float64)``)."""
        self.state[MODEL].to(*args, **kwargs)
        for param_state in self.state[OPTIMIZER].state.values():
            for key, value in param_state.items():
                if isinstance(value, torch.Tensor):
                    param_state[key] = value.to(*args, **kwargs)
        update_device_and_dtype(self.state, *args, **kwargs)
        self._match_grad_scaler()
        return self

    def _match_grad_scaler(self) -> None:
        """Remake an fp16 ``GradScaler`` chosen before ``to(device)`` for the new device type, keeping its scale."""
        from torchbearer.precision import device_type

        scaler = self.state[GRAD_SCALER]
        wanted = device_type(self.state[DEVICE])
        if scaler is None or getattr(scaler, "_device", wanted) == wanted:
            return
        moved = torch.amp.GradScaler(wanted)
        moved.load_state_dict(scaler.state_dict())
        self.state[GRAD_SCALER] = moved

    def cuda(self, device: int | str | torch.device | None = None) -> Trial:
        """Move to a CUDA device (default the current one)."""
        if device is None:
            device = torch.cuda.current_device()
        return self.to("cuda:" + str(device))

    def cpu(self) -> Trial:
        """Move to the CPU."""
        return self.to("cpu")

    # ----------------------------------------------------------------------------------- persistence
    def state_dict(self, **kwargs: Any) -> dict[str, Any]:
        """Everything needed to resume, as plain types (loads with ``torch.load(weights_only=True)``)."""
        return self._resume.state_dict(self.state, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any], resume: bool = True, **kwargs: Any) -> Trial:
        """Load a Trial state dict (all of it with ``resume``, else the model only) or a bare model state dict.

        Raises:
            StateDictError: the dict matches neither a Trial nor the model (missing and unexpected keys named).
        """
        self._resume.load_state_dict(self.state, state_dict, resume, **kwargs)
        return self


def _shown(value: Any) -> Any:
    """A part as ``str(trial)`` shows it: ``None`` for the stand-ins of a part the user did not give."""
    return None if isinstance(value, (MockModel, MockOptimizer)) else value


def _short_name(value: Any) -> str:
    """A part as ``repr(trial)`` names it: its class (a function's name), ``None`` for a part not given."""
    if value is None or isinstance(value, (MockModel, MockOptimizer, ZeroLoss)):
        return "None"
    if isinstance(value, str):  # a state key as the criterion
        return repr(str(value))
    value = unwrap_model(value)
    return getattr(value, "__name__", type(value).__name__)


def _length(generator, steps: int) -> int:
    try:
        return len(generator)
    except TypeError:  # an iterable without a length: restart it whenever it runs out
        return steps - 1


class _cleanup_on_failure:
    """If a call fails, still give callbacks their ``on_end`` so they close files and bars, then re-raise."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def __enter__(self) -> None:
        return None

    def __exit__(self, error_type, error, traceback) -> bool:
        if error is not None and not isinstance(error, GeneratorExit):
            try:
                self.state[CALLBACK_LIST].on_end(self.state)
            except Exception as cleanup_error:  # the original failure matters more
                warnings.warn(f"a callback failed while cleaning up after an error: {cleanup_error!r}", stacklevel=2)
        return False
