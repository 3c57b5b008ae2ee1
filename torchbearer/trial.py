"""``Trial``: what users call. Builder methods configure the state; ``run``, ``evaluate``,
``predict`` and ``replay`` drive the passes in :mod:`torchbearer.loop`."""

from __future__ import annotations

import contextlib
import signal
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from torchbearer import checks, distributed, prefetch
from torchbearer.bases import Callback, cite, standard_closure
from torchbearer.callbacks.aggregate_predictions import AggregatePredictions
from torchbearer.callbacks.callbacks import CallbackList
from torchbearer.callbacks.evaluation import EVALUATION
from torchbearer.calling import always_pass_state
from torchbearer.compiling import TrialCompilation
from torchbearer.devices import deep_to, unwrap_model, update_device_and_dtype
from torchbearer.errors import ConfigurationError, ConfigurationTypeError, TorchbearerWarning
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
    BatchLoader,
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


class _DataKeys(dict):
    """The three data sets by key; any other key (``evaluate(data_key='val')``) is a clear error."""

    def __missing__(self, key: Any) -> tuple:
        raise ConfigurationError(
            f"data_key {key!r} is not a data set: use torchbearer.TRAIN_DATA, torchbearer.VALIDATION_DATA or "
            "torchbearer.TEST_DATA"
        )


_DATA_KEYS = _DataKeys({
    TRAIN_DATA: (TRAIN_GENERATOR, TRAIN_STEPS, "training"),
    VALIDATION_DATA: (VALIDATION_GENERATOR, VALIDATION_STEPS, "validation"),
    TEST_DATA: (TEST_GENERATOR, TEST_STEPS, "test"),
})  # fmt: skip
_SHORT_NAMES = {"training": "train", "validation": "val", "test": "test"}  # as in with_val_data, for_val_steps


def _empty_generator_error(label: str) -> ConfigurationError:
    return ConfigurationError(
        f"the {label} generator is empty (length 0): check the dataset and that batch_size is not "
        "larger than the dataset with drop_last=True"
    )


def _tensor_loader(data_key, dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    """A ``DataLoader`` over tensors; an empty one is refused here, before a shuffling sampler fails on it."""
    if len(dataset) == 0:
        raise _empty_generator_error(_DATA_KEYS[data_key][2])
    return DataLoader(dataset, batch_size, shuffle=shuffle, num_workers=num_workers)


def _int_steps(steps: Any, label: str) -> int:
    if not isinstance(steps, int):
        warnings.warn(f"Number of {label} steps is not an int, casting to int", stacklevel=3)
        try:
            steps = int(steps)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"the number of {label} steps must be an int, got {steps!r}") from error
    return steps


@cite(
    """@article{2018torchbearer,
  title={Torchbearer: A Model Fitting Library for PyTorch},
  author={Harris, Ethan and Painter, Matthew and Hare, Jonathon},
  journal={arXiv preprint arXiv:1809.03363},
  year={2018}
}"""
)
class Trial:
    """Fits a model: holds the model, optimizer, criterion, metrics and callbacks in a state dict.

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

    # ----------------------------------------------------------------------------------- data
    def _with_generator(self, data_key, generator, steps) -> Trial:
        generator_key, steps_key, label = _DATA_KEYS[data_key]
        short = _SHORT_NAMES[label]
        if isinstance(generator, torch.Tensor):
            raise ConfigurationTypeError(
                f"with_{short}_generator got a tensor; it needs a DataLoader (or another re-iterable of batches). "
                f"For tensors use with_{short}_data(x{', y' if short != 'test' else ''}, batch_size=...)"
            )
        self.state[generator_key] = generator
        if steps is None:
            steps = self.state[steps_key]
        try:
            length = len(generator)
        except TypeError as error:
            if steps is None:
                raise ConfigurationError(
                    f"the {label} generator {type(generator).__name__} has no length, so the number of steps "
                    f"per epoch is unknown: pass steps=N to with_{short}_generator or call for_{short}_steps(N)"
                ) from error
            length = None
        if length == 0:
            raise _empty_generator_error(label)
        return self._for_steps(data_key, length if steps is None else steps)

    def with_train_generator(self, generator: Iterable[Any], steps: int | None = None) -> Trial:
        """Train on ``generator`` (re-iterated each epoch), ``steps`` batches per epoch (default its length).

        Raises:
            ConfigurationTypeError: ``generator`` is a tensor (use :meth:`with_train_data`).
            ConfigurationError: the generator is empty, or has no length and no ``steps`` are given.
        """
        return self._with_generator(TRAIN_DATA, generator, steps)

    def with_val_generator(self, generator: Iterable[Any], steps: int | None = None) -> Trial:
        """Validate on ``generator`` after each training pass; also the default for ``evaluate``."""
        return self._with_generator(VALIDATION_DATA, generator, steps)

    def with_test_generator(self, generator: Iterable[Any], steps: int | None = None) -> Trial:
        """Use ``generator`` for ``predict``."""
        return self._with_generator(TEST_DATA, generator, steps)

    def with_generators(
        self, train_generator: Iterable[Any] | None = None, val_generator: Iterable[Any] | None = None,
        test_generator: Iterable[Any] | None = None, train_steps: int | None = None, val_steps: int | None = None,
        test_steps: int | None = None,
    ) -> Trial:  # fmt: skip
        """Set any of the train, validation and test generators at once."""
        if train_generator is not None:
            self.with_train_generator(train_generator, train_steps)
        if val_generator is not None:
            self.with_val_generator(val_generator, val_steps)
        if test_generator is not None:
            self.with_test_generator(test_generator, test_steps)
        return self

    def with_train_data(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1, shuffle: bool = True, num_workers: int = 0,
        steps: int | None = None,
    ) -> Trial:  # fmt: skip
        """Train on tensors ``x``, ``y`` through a ``DataLoader`` (in this process: tensors in memory need no workers).

        Raises:
            ConfigurationTypeError: ``x`` or ``y`` is not a tensor.
            ConfigurationError: ``x`` and ``y`` differ in length, or the loader would be empty.
        """
        dataset = checks.tensor_dataset("with_train_data", x=x, y=y)
        loader = _tensor_loader(TRAIN_DATA, dataset, batch_size, shuffle, num_workers)
        return self.with_train_generator(loader, steps=steps)

    def with_val_data(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1, shuffle: bool = False, num_workers: int = 0,
        steps: int | None = None,
    ) -> Trial:  # fmt: skip
        """Validate on tensors ``x``, ``y`` in order through a ``DataLoader`` (errors as in :meth:`with_train_data`)."""
        dataset = checks.tensor_dataset("with_val_data", x=x, y=y)
        loader = _tensor_loader(VALIDATION_DATA, dataset, batch_size, shuffle, num_workers)
        return self.with_val_generator(loader, steps=steps)

    def with_test_data(
        self, x: torch.Tensor, batch_size: int = 1, num_workers: int = 0, steps: int | None = None
    ) -> Trial:  # fmt: skip
        """Predict on tensor ``x`` (unshuffled) through a ``DataLoader`` (errors as in :meth:`with_train_data`)."""
        loader = DataLoader(checks.tensor_dataset("with_test_data", x=x), batch_size, num_workers=num_workers)
        return self.with_test_generator(loader, steps=steps)

    def with_data(
        self, x_train: torch.Tensor | None = None, y_train: torch.Tensor | None = None,
        x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, x_test: torch.Tensor | None = None,
        batch_size: int = 1, num_workers: int = 0, train_steps: int | None = None, val_steps: int | None = None,
        test_steps: int | None = None, shuffle: bool = True,
    ) -> Trial:  # fmt: skip
        """Set train, validation and test tensors at once; parts left ``None`` are skipped.

        ``shuffle`` applies to the training data only: validation and test data are read in order.
        """
        if x_train is not None and y_train is not None:
            self.with_train_data(x_train, y_train, batch_size, shuffle, num_workers, train_steps)
        if x_val is not None and y_val is not None:
            self.with_val_data(x_val, y_val, batch_size, False, num_workers, val_steps)
        if x_test is not None:
            self.with_test_data(x_test, batch_size, num_workers, test_steps)
        return self

    def _for_steps(self, data_key, steps) -> Trial:
        generator_key, steps_key, label = _DATA_KEYS[data_key]
        steps = _int_steps(steps, label)
        self.state[steps_key] = steps
        self.state[data_key] = (self.state[generator_key], steps)
        return self

    def for_train_steps(self, steps: int) -> Trial:
        """Run ``steps`` training batches per epoch (-1: until a callback stops training)."""
        return self._for_steps(TRAIN_DATA, steps)

    def for_val_steps(self, steps: int) -> Trial:
        """Run ``steps`` validation batches per epoch."""
        return self._for_steps(VALIDATION_DATA, steps)

    def for_test_steps(self, steps: int) -> Trial:
        """Run ``steps`` batches in ``predict``."""
        return self._for_steps(TEST_DATA, steps)

    def for_steps(
        self, train_steps: int | None = None, val_steps: int | None = None, test_steps: int | None = None
    ) -> Trial:
        """Set any of the step counts at once."""
        if train_steps is not None:
            self.for_train_steps(train_steps)
        if val_steps is not None:
            self.for_val_steps(val_steps)
        if test_steps is not None:
            self.for_test_steps(test_steps)
        return self

    def for_inf_train_steps(self) -> Trial:
        """Train until a callback sets ``STOP_TRAINING``."""
        return self.for_train_steps(-1)

    def for_inf_val_steps(self) -> Trial:
        """Validate until a callback sets ``STOP_TRAINING``."""
        return self.for_val_steps(-1)

    def for_inf_test_steps(self) -> Trial:
        """Predict until a callback sets ``STOP_TRAINING``."""
        return self.for_test_steps(-1)

    def for_inf_steps(self, train: bool = True, val: bool = True, test: bool = True) -> Trial:
        """Make each flagged pass infinite."""
        if train:
            self.for_inf_train_steps()
        if val:
            self.for_inf_val_steps()
        if test:
            self.for_inf_test_steps()
        return self

    def with_inf_train_loader(self) -> Trial:
        """Keep one training iterator across epochs, restarting it only when exhausted."""
        self.state[INF_TRAIN_LOADING] = True
        return self

    def with_loader(self, batch_loader: BatchLoader) -> Trial:
        """Use ``batch_loader(state)`` to load every batch of every pass."""
        checks.require_callable("with_loader", batch_loader, "a function batch_loader(state)")
        self.state[LOADER] = batch_loader
        return self

    def with_closure(self, closure: Callable[[dict], Any]) -> Trial:
        """Replace the training step's closure (called as ``closure(state)`` inside ``optimizer.step``)."""
        checks.require_callable("with_closure", closure, "a function closure(state), e.g. from base_closure(...)")
        self.closure = closure
        self._own_closure = True
        return self

    # ----------------------------------------------------------------------------------- speed
    def with_precision(self, precision: str = "bf16") -> Trial:
        """Train and evaluate under mixed precision: ``'bf16'``, ``'fp16'`` or ``'fp32'`` (off).

        ``bf16`` autocasts the forward pass and criterion; ``fp16`` also scales the loss with a
        ``torch.amp.GradScaler`` (skipping steps whose gradients overflow, saved in ``state_dict``).
        It may come before or after ``to(device)``. Gradient clipping callbacks unscale the gradients first.

        Example:
            >>> Trial(model, optimizer, loss).to('cuda').with_precision('bf16')  # doctest: +SKIP
        """
        from torchbearer.precision import autocast_dtype, device_type

        dtype = autocast_dtype(precision)
        self.state[AUTOCAST_DTYPE] = dtype
        scaler = None
        if dtype is torch.float16:
            scaler = torch.amp.GradScaler(device_type(self.state[DEVICE]))
        self.state[GRAD_SCALER] = scaler
        return self

    def with_compile(self, explain: bool = False, **compile_kwargs: Any) -> Trial:
        """Compile the training step as a hand-written loop would: forward, loss and backward as one graph.

        Each training pass runs the model, the criterion and ``loss.backward()`` as one compiled function
        when no callback overrides ``on_forward`` or ``on_criterion`` (which would run inside it); else
        the step runs as without compile, around the compiled model. Validation and prediction use the
        compiled model. See ``docs/guide/compile.md`` for what splits the region, shapes and CUDA graphs.
        State dicts and checkpoints still hold the plain model's keys (no ``_orig_mod.`` prefix).

        Args:
            explain: Print, at the first training batch, how many graphs the step compiles into and why
                it breaks (``torch._dynamo.explain``), or why the step cannot be one region.
            **compile_kwargs: For ``torch.compile``: ``mode`` (``'reduce-overhead'`` for CUDA graphs on a
                GPU), ``dynamic``, ``backend``, ``options``, ...

        Raises:
            ConfigurationError: the model is not an ``nn.Module``.

        Example:
            >>> Trial(model, optimizer, loss, metrics=['acc']).with_compile(explain=True)  # doctest: +SKIP
        """
        model = self.state[MODEL]
        if not isinstance(model, torch.nn.Module):
            raise ConfigurationError(f"with_compile needs an nn.Module model, got {type(model).__name__}")
        self._compilation = TrialCompilation(compile_kwargs, explain)
        if unwrap_model(model) is model:
            self.state[MODEL] = self._compilation.compile_model(model)
        return self

    def with_accumulation(self, steps: int) -> Trial:
        """Add up the gradients of ``steps`` batches before each optimizer step.

        The loss of each batch is divided by ``steps``, so with a mean-reduced loss one step over
        ``steps`` batches equals one step over their concatenation (for models without batch
        statistics). Under DistributedDataParallel the gradient all-reduce runs only on the last one.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ConfigurationError(f"with_accumulation needs a positive int number of batches, got {steps!r}")
        self.state[ACCUMULATION_STEPS] = steps
        return self

    def with_prefetch(self, enabled: bool = True) -> Trial:
        """Load each batch one step ahead and start its copy to the device while the current batch trains.

        On a GPU the copy runs on a side CUDA stream; give the ``DataLoader`` ``pin_memory=True`` so that
        it overlaps with compute. On the CPU there is nothing to overlap and batches arrive as before.

        Example:
            >>> trial.to('cuda').with_prefetch()  # doctest: +SKIP
        """
        self.state[PREFETCH] = bool(enabled)
        return self

    def with_distributed(self, enabled: bool = True, strategy: str = "ddp", **options: Any) -> Trial:
        """Choose how the Trial scales out on ``torch.distributed`` (see ``docs/scaling-out.md``).

        Without this call a Trial launched by ``torchrun`` already trains data-parallel with DDP.

        Args:
            enabled: ``False`` turns the automation off: no wrapping, no samplers, no metric reduction.
            strategy: ``'ddp'`` (DistributedDataParallel) or ``'fsdp'`` (FSDP2 ``fully_shard``).
            **options: ``backend``, ``timeout`` (seconds), ``shard_modules`` and ``state_dict_type``
                (``'full'`` or ``'sharded'``) for FSDP, and keyword arguments for the wrapper; see
                :func:`torchbearer.distributed.configure`.

        Example:
            >>> trial.with_distributed(strategy='fsdp', shard_modules=(nn.TransformerEncoderLayer,))  # doctest: +SKIP
        """
        distributed.configure(self.state, enabled, strategy, **options)
        return self

    def with_preemption(
        self,
        path: str | None,
        signals: Sequence[signal.Signals] = (signal.SIGTERM,),
        exit_code: int = distributed.PREEMPTED_EXIT_CODE,
    ) -> Trial:
        """On SIGTERM during ``run``: finish the batch, write a checkpoint to ``path``, exit with status 143.

        Every rank stops at the same step and the checkpoint resumes bit-identically (load it before ``run``
        with ``torchbearer.distributed.load_checkpoint``); see :mod:`torchbearer.distributed.preemption`
        and ``docs/scaling-out.md``. ``path=None`` switches it off.

        Args:
            path: The checkpoint file (a folder for sharded FSDP checkpoints).
            signals: The signals to act on, e.g. ``(signal.SIGTERM, signal.SIGUSR1)``.
            exit_code: The status ``torchbearer.distributed.Preempted`` (a ``SystemExit``) exits with.

        Example:
            >>> trial.with_preemption('checkpoints/last.pt')  # doctest: +SKIP
        """
        distributed.preemption.configure(self.state, path, signals, exit_code)
        return self

    # ----------------------------------------------------------------------------------- passes
    def _prepare_pass(self, state: dict, data_key, default_loader) -> None:
        """Point the state at one data set: its generator, steps, batch loader and a fresh iterator."""
        generator_key, steps_key, _ = _DATA_KEYS[data_key]
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
        generator_key, steps_key, _ = _DATA_KEYS[data_key]
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
        label = _DATA_KEYS[data_key][2]
        short = _SHORT_NAMES[label]
        warnings.warn(
            f"{method}() has no {label} data, so it returned {result}: give data with with_{short}_data / "
            f"with_{short}_generator (or for_{short}_steps(N) to run without data), or choose another data set "
            "with data_key=",
            TorchbearerWarning,
            stacklevel=stacklevel,
        )

    def _evaluation_pass(self, state: dict) -> None:
        state[EVALUATION] = _SHORT_NAMES[_DATA_KEYS[state[DATA]][2]]  # loggers record it at the trial's epoch
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
