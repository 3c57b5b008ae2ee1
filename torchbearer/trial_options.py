"""The Trial's builder methods for how the training step runs: its closure, precision, compilation,
gradient accumulation, prefetching, distribution and preemption.

:class:`StepOptions` is a base class of :class:`torchbearer.Trial` (its methods act on ``self.state``);
it lives here so that ``trial.py`` holds the fitting itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from torchbearer import checks, distributed
from torchbearer.compiling import TrialCompilation
from torchbearer.devices import unwrap_model
from torchbearer.errors import ConfigurationError
from torchbearer.state import ACCUMULATION_STEPS, AUTOCAST_DTYPE, DEVICE, GRAD_SCALER, MODEL, PREFETCH

_Trial = TypeVar("_Trial", bound="StepOptions")  # the Trial itself: each builder returns it for chaining


class StepOptions:
    """``with_closure``, ``with_precision``, ``with_compile``, ``with_accumulation``, ``with_prefetch``,
    ``with_distributed`` and ``with_preemption``."""

    state: dict
    closure: Callable[[dict], Any]
    _own_closure: bool
    _compilation: TrialCompilation | None

    def with_closure(self: _Trial, closure: Callable[[dict], Any]) -> _Trial:
        """Replace the training step's closure (called as ``closure(state)`` inside ``optimizer.step``)."""
        checks.require_callable("with_closure", closure, "a function closure(state), e.g. from base_closure(...)")
        self.closure = closure
        self._own_closure = True
        return self

    def with_precision(self: _Trial, precision: str = "bf16") -> _Trial:
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

    def with_compile(self: _Trial, explain: bool = False, **compile_kwargs: Any) -> _Trial:
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

    def with_accumulation(self: _Trial, steps: int) -> _Trial:
        """Add up the gradients of ``steps`` batches before each optimizer step.

        The loss of each batch is divided by ``steps``, so with a mean-reduced loss one step over
        ``steps`` batches equals one step over their concatenation (for models without batch
        statistics). Under DistributedDataParallel the gradient all-reduce runs only on the last one.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ConfigurationError(f"with_accumulation needs a positive int number of batches, got {steps!r}")
        self.state[ACCUMULATION_STEPS] = steps
        return self

    def with_prefetch(self: _Trial, enabled: bool = True) -> _Trial:
        """Load each batch one step ahead and start its copy to the device while the current batch trains.

        On a GPU the copy runs on a side CUDA stream; give the ``DataLoader`` ``pin_memory=True`` so that
        it overlaps with compute. On the CPU there is nothing to overlap and batches arrive as before.

        Example:
            >>> trial.to('cuda').with_prefetch()  # doctest: +SKIP
        """
        self.state[PREFETCH] = bool(enabled)
        return self

    def with_distributed(self: _Trial, enabled: bool = True, strategy: str = "ddp", **options: Any) -> _Trial:
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
        self: _Trial,
        path: str | None,
        signals: Sequence[signal.Signals] = (signal.SIGTERM,),
        exit_code: int = distributed.PREEMPTED_EXIT_CODE,
    ) -> _Trial:
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
