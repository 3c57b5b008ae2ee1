"""``Trial.with_compile``: the training step compiled the way one would compile it by hand.

A hand-written loop gets the most from ``torch.compile`` by compiling the forward pass, the loss and
the backward pass as one function: one graph, whose gradients the graph itself adds to ``.grad``
(dynamo traces ``loss.backward()`` when ``torch._dynamo.config.trace_autograd_ops`` is on). The
Trial does the same with :class:`CompiledRegion`, run by :func:`compiled_forward_backward`, the
compiled twin of :func:`torchbearer.loop.forward_backward`. The model itself is compiled too
(``torch.compile(model)``), for validation, prediction and every step that cannot be one region.

Hooks ``on_forward`` and ``on_criterion`` sit inside the region, so at the start of each training
pass :meth:`TrialCompilation.training_pass` asks :func:`region_blocker` whether anything must run
there. If nothing must, the pass runs the region; otherwise it runs the Trial's usual closure around
the compiled model (the region split at the hooks: compiled forward, then the criterion, the hooks
and the backward in Python). Metrics run after the step, outside any compiled code.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from torchbearer.calling import criterion_takes_state, model_takes_state
from torchbearer.devices import unwrap_model
from torchbearer.distributed.wrapping import is_distributed_model
from torchbearer.errors import TorchbearerWarning
from torchbearer.loop import forward_backward
from torchbearer.precision import device_type, starts_accumulation
from torchbearer.state import (
    ACCUMULATION_STEPS,
    AUTOCAST_DTYPE,
    BACKWARD_ARGS,
    CALLBACK_LIST,
    CRITERION,
    DEVICE,
    GENERATOR,
    GRAD_SCALER,
    LOSS,
    MODEL,
    OPTIMIZER,
    Y_PRED,
    Y_TRUE,
    X,
)

HOOKS_INSIDE_THE_REGION = ("on_forward", "on_criterion")
# Each region keeps its own compiled versions: dynamo stops compiling a function after recompile_limit (8)
# versions, and without this every Trial of a process (a hyper-parameter sweep) would share those 8.
_ISOLATED = {"isolate_recompiles": True} if "isolate_recompiles" in inspect.signature(torch.compile).parameters else {}
_WITHOUT_CUDA_GRAPHS = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}

# Dynamo traces loss.backward() into the graph only with this flag, which torch 2.14 has (earlier
# versions are not known to trace backward: they compile forward and criterion, see CompiledRegion).
# It is set while a training pass runs the region (TrialCompilation.training_pass), not for the process.
BACKWARD_TRACEABLE = torch.__version__ >= (2, 14) and hasattr(torch._dynamo.config, "trace_autograd_ops")
_BACKWARD_IN_THE_GRAPH = (
    torch._dynamo.config.patch(trace_autograd_ops=True) if BACKWARD_TRACEABLE else contextlib.nullcontext()
)


def uses_cuda_graphs(compile_kwargs: dict) -> bool:
    """True when ``torch.compile(**compile_kwargs)`` records CUDA graphs (modes reduce-overhead, max-autotune)."""
    options = compile_kwargs.get("options") or {}
    mode = compile_kwargs.get("mode")
    return bool(options.get("triton.cudagraphs", mode in ("reduce-overhead", "max-autotune")))


def compiled_forward_backward(state: dict, region: CompiledRegion) -> Any:
    """The closure of a compiled training step: zero_grad → ``region`` (forward → criterion → backward,
    one compiled graph) → ``on_backward``; returns the loss, as :func:`torchbearer.loop.forward_backward`.

    Used only when no callback overrides ``on_forward`` or ``on_criterion`` (see :func:`region_blocker`).
    If the region cannot be compiled as one graph (a graph break) or fails, this batch and the rest of
    the pass run :func:`~torchbearer.loop.forward_backward` around the compiled model, which also gives
    a mistake in the model or the data the Trial's usual explained error.
    """
    if region.failure is None:
        if starts_accumulation(state):
            state[OPTIMIZER].zero_grad()
        try:
            state[Y_PRED], state[LOSS] = region(state[X], state[Y_TRUE])  # detached: the backward already ran
        except Exception as error:  # compiling raises before the graph runs, so the batch can run again
            region.failed(error)
        else:
            state[CALLBACK_LIST].on_backward(state)
            return state[LOSS]
    return forward_backward(state)


class CompiledRegion:
    """``model`` → ``criterion`` → backward on tensors, compiled as one function.

    Calling it returns the (detached) prediction and loss; the gradients are added to ``.grad``. On a
    torch that cannot trace ``loss.backward()`` (no ``trace_autograd_ops``), forward and criterion are
    compiled as one function and the backward runs through autograd, as a hand-written loop would.

    Args:
        model: A plain module called as ``model(x)`` (``model(*x)`` for a list or tuple).
        criterion: Called as ``criterion(y_pred, y_true)`` (lists and tuples spread, as eagerly).
        autocast_dtype: The mixed-precision dtype for forward and criterion, or None.
        device: The device the step runs on (for autocast).
        accumulation_steps: The loss is divided by this before the backward (gradient accumulation).
        compile_kwargs: For ``torch.compile``.
    """

    def __init__(
        self, model: torch.nn.Module, criterion: Callable, autocast_dtype: torch.dtype | None, device: Any,
        accumulation_steps: int, compile_kwargs: dict,
    ) -> None:  # fmt: skip
        def forward_criterion(x: Any, y_true: Any) -> tuple[Any, torch.Tensor]:
            y_pred = model(*x) if isinstance(x, (list, tuple)) else model(x)
            predictions = y_pred if isinstance(y_pred, (list, tuple)) else (y_pred,)
            targets = y_true if isinstance(y_true, (list, tuple)) else (y_true,)
            return y_pred, criterion(*predictions, *targets)

        if autocast_dtype is not None:  # mixed precision: the forward pass and the criterion under autocast
            forward_criterion = torch.autocast(device_type(device), dtype=autocast_dtype)(forward_criterion)
        forward = forward_criterion
        if not BACKWARD_TRACEABLE:  # forward and criterion compiled, and their backward by AOTAutograd
            forward = torch.compile(forward_criterion, **_ISOLATED, **compile_kwargs)

        def forward_criterion_backward(x: Any, y_true: Any) -> tuple[Any, torch.Tensor]:
            y_pred, loss = forward(x, y_true)
            (loss / accumulation_steps if accumulation_steps > 1 else loss).backward()
            return _each_tensor(torch.Tensor.detach, y_pred), loss.detach()

        self.key = (model, criterion, autocast_dtype, device_type(device), accumulation_steps)
        self.model = model
        self.compiled = forward_criterion_backward  # runs the compiled forward; autograd runs its backward
        self.explained = forward_criterion  # what explain=True reports on: the compiled function, uncompiled
        if BACKWARD_TRACEABLE:
            # One graph. fullgraph: a graph break raises instead of splitting it, because a backward traced
            # across a break loses gradients (torch 2.14); the Trial then runs the step around the compiled model.
            self.compiled = torch.compile(
                forward_criterion_backward, **_ISOLATED, **{**compile_kwargs, "fullgraph": True}
            )
            self.explained = forward_criterion_backward
        self.cuda_graphs = uses_cuda_graphs(compile_kwargs)
        self.explain_next_call = False
        self.failure: Exception | None = None

    def __call__(self, x: Any, y_true: Any) -> tuple[Any, torch.Tensor]:
        if self.explain_next_call:
            self.explain_next_call = False
            print(explanation(self.explained, (x, y_true), self.model, "the training step's region"))
        y_pred, loss = self.compiled(x, y_true)  # within TrialCompilation.training_pass: backward traced
        if self.cuda_graphs:  # the next replay overwrites a CUDA graph's outputs; metrics keep earlier ones
            y_pred, loss = _each_tensor(torch.Tensor.clone, y_pred), loss.clone()
        return y_pred, loss

    def failed(self, error: Exception) -> None:
        """Give the region up for this run after ``error`` (usually a graph break), with a warning."""
        self.failure = error
        summary = str(error).strip().splitlines()[0] if str(error).strip() else ""
        warnings.warn(
            f"with_compile: the training step does not compile as one graph ({type(error).__name__}: {summary}); "
            "it runs as the compiled model with the criterion and backward in Python. with_compile(explain=True) "
            "lists the graph breaks and where they are",
            TorchbearerWarning,
            stacklevel=2,
        )


def _each_tensor(function: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    """``value`` with ``function`` applied to every tensor in it (lists, tuples, named tuples and dicts kept)."""
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, (list, tuple)):
        items = [_each_tensor(function, item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {key: _each_tensor(function, item) for key, item in value.items()}
    return value


def _names_overriding(callbacks: Any, hook: str) -> list[str]:
    """Names of the callbacks (the printer included) whose ``hook`` does something."""
    bound_hooks = callbacks._hooks(hook)  # the CallbackList's own dispatch: the hooks it will call
    return [type(getattr(bound, "__self__", bound)).__name__ for bound in bound_hooks]


def region_blocker(state: dict, default_closure: bool) -> str | None:
    """Why this training pass cannot run forward, criterion and backward as one compiled region; None if it can.

    Args:
        state: The state at the start of the pass.
        default_closure: Whether the Trial runs its standard closure (not one set with ``with_closure``).
    """
    if not default_closure:
        return "the Trial runs a closure of its own (with_closure), which runs eagerly around the compiled model"
    for hook in HOOKS_INSIDE_THE_REGION:
        names = _names_overriding(state[CALLBACK_LIST], hook)
        if names:
            return f"{hook} of {', '.join(names)} runs inside it (between the forward pass and the backward)"
    model = state[MODEL]
    plain = getattr(model, "_orig_mod", model)
    if is_distributed_model(model) or unwrap_model(plain) is not plain:
        return "the model is wrapped for data parallelism, whose gradient hooks a compiled backward would skip"
    if not isinstance(plain, torch.nn.Module) or model_takes_state(plain) is not False:
        return "the model takes the state (forward(..., state=...))"
    if criterion_takes_state(state[CRITERION]) is not False:
        return "the criterion takes the state (criterion(state))"
    if state.get(GRAD_SCALER) is not None:
        return "fp16 scales the loss with a GradScaler"
    if state.get(BACKWARD_ARGS):
        return f"backward takes arguments {state[BACKWARD_ARGS]}"
    if state.get(GENERATOR) is None:
        return "the training pass has no data"
    return None


class TrialCompilation:
    """What ``Trial.with_compile`` set up: the compile options, and the region of the latest training pass.

    Args:
        compile_kwargs: For ``torch.compile`` (``mode``, ``dynamic``, ``backend``, ``options``, ...).
        explain: Print, at the first training batch, the graphs and graph breaks of what is compiled.
    """

    def __init__(self, compile_kwargs: dict, explain: bool = False) -> None:
        self.compile_kwargs = compile_kwargs
        self.explain = explain
        self.region: CompiledRegion | None = None

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``torch.compile(model)`` for everything but the region, without CUDA graphs: validation and
        callbacks keep the outputs of earlier batches, which a CUDA graph's next replay would overwrite."""
        kwargs = dict(self.compile_kwargs)
        if kwargs.get("mode") in _WITHOUT_CUDA_GRAPHS:
            kwargs["mode"] = _WITHOUT_CUDA_GRAPHS[kwargs["mode"]]
        if (kwargs.get("options") or {}).get("triton.cudagraphs"):
            kwargs["options"] = {**kwargs["options"], "triton.cudagraphs": False}
        return torch.compile(model, **kwargs)

    @contextlib.contextmanager
    def training_pass(
        self, state: dict, closure: Callable[[dict], Any], default_closure: bool
    ) -> Iterator[Callable[[dict], Any]]:
        """Gives the closure for one training pass: the compiled region if nothing blocks it, else ``closure``.

        While a pass runs the region, dynamo may trace ``loss.backward()`` (``trace_autograd_ops``). The
        flag is set for the pass rather than around each batch because changing dynamo's configuration
        makes its next guard check hash the configuration again, which costs more than a small model's
        step gains.

        Args:
            state: The state at the start of the pass.
            closure: The Trial's closure, which runs around the compiled model when the region cannot.
            default_closure: Whether ``closure`` is the Trial's standard one.
        """
        region, blocker = self._region_for(state, default_closure)
        explain, self.explain = self.explain, False  # explain the first pass only
        if region is None:
            yield _explaining_first_call(closure, blocker) if explain else closure
            return
        region.explain_next_call = explain
        with _BACKWARD_IN_THE_GRAPH:
            yield functools.partial(compiled_forward_backward, region=region)

    def _region_for(self, state: dict, default_closure: bool) -> tuple[CompiledRegion | None, str]:
        """The region for this pass (made again if the model, criterion or precision changed), or None and why."""
        blocker = region_blocker(state, default_closure)
        if blocker is not None:
            return None, blocker
        plain_model = getattr(state[MODEL], "_orig_mod", state[MODEL])
        key = (plain_model, state[CRITERION], state.get(AUTOCAST_DTYPE), device_type(state[DEVICE]),
               state.get(ACCUMULATION_STEPS) or 1)  # fmt: skip
        if self.region is None or self.region.key != key:
            self.region = CompiledRegion(*key[:2], key[2], state[DEVICE], key[4], self.compile_kwargs)
        if self.region.failure is not None:
            return None, f"it did not compile in an earlier pass ({type(self.region.failure).__name__})"
        return self.region, ""


def _explaining_first_call(closure: Callable[[dict], Any], blocker: str) -> Callable[[dict], Any]:
    """``closure``, printing before its first call why there is no region and how the model compiles."""
    pending = [True]

    def closure_that_explains(state: dict) -> Any:
        if pending:
            pending.clear()
            model = state[MODEL]
            plain = unwrap_model(model)
            x = state[X]
            args = tuple(x) if isinstance(x, (list, tuple)) else (x,)
            print(f"with_compile: no single compiled region for the training step: {blocker}.")
            print(explanation(plain, args, plain, "the model"))
        return closure(state)

    return closure_that_explains


def explanation(function: Callable, args: tuple, model: torch.nn.Module, what: str) -> str:
    """A report of how ``torch.compile`` splits ``function(*args)`` into graphs, and why.

    It runs ``function`` once more under ``torch._dynamo.explain``; the model's gradients and buffers
    (batch-norm statistics) are put back afterwards, so training goes on as if it had not run.
    """
    parameters = [parameter for parameter in model.parameters()]
    gradients = [None if parameter.grad is None else parameter.grad.clone() for parameter in parameters]
    buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
    with _BACKWARD_IN_THE_GRAPH:
        explained = torch._dynamo.explain(function)(*args)
    for parameter, gradient in zip(parameters, gradients):
        parameter.grad = gradient
    with torch.no_grad():
        for buffer, saved in buffers:
            buffer.copy_(saved)
    return describe_explanation(explained, what)


def describe_explanation(explained: Any, what: str) -> str:
    """``torch._dynamo.explain``'s output in a few lines: how many graphs and breaks, and each cause with its
    place, dynamo's explanation and its first hint.

    A break inside a nested call (the model's ``forward``) also breaks every frame around it, so there
    are often more breaks than causes.
    """
    graphs, breaks = explained.graph_count, explained.graph_break_count
    lines = [f"torch.compile of {what}: {graphs} graph(s), {breaks} graph break(s)."]
    causes: list[str] = []
    for reason in explained.break_reasons:
        cause = _cause(reason)
        if cause not in causes:
            causes.append(cause)
    lines += causes
    if causes:
        lines.append("  Each break ends a graph and runs Python before the next one: remove the causes for one graph.")
    return "\n".join(lines)


def _cause(reason: Any) -> str:
    """One graph break's cause: the summary and the place, then dynamo's explanation and first hint, indented."""
    text = [line.strip() for line in str(reason.reason).strip().splitlines() if line.strip()]
    frame = reason.user_stack[-1] if reason.user_stack else None
    place = f" at {frame.filename}:{frame.lineno} in {frame.name}" if frame is not None else ""
    details = [line.removeprefix("Explanation: ") for line in text[1:] if line.startswith("Explanation:")]
    details += [line for line in text[1:] if line.startswith("Hint:")][:1]
    return "\n".join([f"  cause: {text[0] if text else 'unknown'}{place}", *(f"    {line}" for line in details)])
