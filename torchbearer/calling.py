"""How a model and a criterion are called, decided once per callable by inspecting its signature.

torchbearer 0.5 called ``model(*x, state=state)`` and, on any error, retried without the state,
running a failing forward twice. Here the decision is made from the ``forward`` signature (a
parameter named ``state`` or ``**kwargs``) and cached; only callables whose signature cannot be
read fall back to the try-then-retry rule.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import torch

from torchbearer.devices import unwrap_model
from torchbearer.errors import CriterionError, ModelCallError

_PASS_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STATE_CRITERION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def always_pass_state(model: Any) -> None:
    """Make ``model`` receive ``state=`` on every call (``Trial(..., pass_state=True)``)."""
    _PASS_STATE[model] = True


def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _declares_state(model: Any) -> bool | None:
    """True/False when the forward signature says whether it takes ``state``; None if unknown."""
    bare = unwrap_model(model)
    signature = _signature(bare.forward if isinstance(bare, torch.nn.Module) else bare)
    if signature is None:
        return None
    kinds = {parameter.kind for parameter in signature.parameters.values()}
    if "state" in signature.parameters:
        return True
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return None
    return False


def _remember(table: weakref.WeakKeyDictionary, key: Any, value: bool) -> None:
    try:
        table[key] = value
    except TypeError:  # not weak-referenceable: decide again next time
        pass


def describe(value: Any) -> str:
    """A short description of a tensor (shape, dtype, device) or of a structure of them."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of [" + ", ".join(describe(item) for item in value) + "]"
    return type(value).__name__ if value is not None else "None"


def _explain_model_error(error: Exception, model: Any, x: Any) -> ModelCallError:
    message = f"calling the model {type(unwrap_model(model)).__name__} on the input ({describe(x)}) failed: {error}"
    if x is None:
        message += (
            ". The input is None because this pass has no data: give data with with_train_data / "
            "with_generators / with_loader, or use a model that takes no input"
        )
    elif "device" in str(error):
        message += ". The model and the batch seem to be on different devices: move both with trial.to(device)"
    return ModelCallError(message)


def call_model(state: dict, model: Any, x: Any) -> Any:
    """Run the forward pass: ``model(*x, state=state)`` if it takes state, else ``model(*x)``.

    ``x`` is spread into positional arguments when it is a list or tuple.

    Raises:
        ModelCallError: the forward pass failed; the message names the model and the input.
    """
    args = list(x) if isinstance(x, (list, tuple)) else [x]
    try:
        takes_state = _PASS_STATE.get(model)
    except TypeError:
        takes_state = None
    if takes_state is None:
        takes_state = _declares_state(model)
        if takes_state is None:
            return _call_model_and_learn(state, model, args, x)
        _remember(_PASS_STATE, model, takes_state)
    try:
        return model(*args, state=state) if takes_state else model(*args)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        raise _explain_model_error(error, model, x) from error


def _call_model_and_learn(state: dict, model: Any, args: list, x: Any) -> Any:
    """0.5's rule for opaque callables: try with state, retry without, remember what worked."""
    try:
        output = model(*args, state=state)
        _remember(_PASS_STATE, model, True)
        return output
    except Exception as first:
        try:
            output = model(*args)
        except Exception as retry:
            if isinstance(retry, TypeError):
                errors = [retry, first] if isinstance(first, TypeError) else [first]
            else:
                errors = [retry] if isinstance(first, TypeError) else [first, retry]
            raise Exception(errors) from retry
        _remember(_PASS_STATE, model, False)
        return output


def _takes_state(criterion: Any) -> bool | None:
    """True for ``f(state)``, False for ``f(y_pred, y_true)``, None when it cannot be told."""
    if isinstance(criterion, str):  # a StateKey used as a loss
        return True
    signature = _signature(criterion.forward if isinstance(criterion, torch.nn.Module) else criterion)
    if signature is None:
        return None
    positional = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    if any(parameter.kind == parameter.VAR_POSITIONAL for parameter in signature.parameters.values()):
        return None
    required = [parameter for parameter in positional if parameter.default is parameter.empty]
    if len(required) == 1:
        return True
    return False if len(positional) >= 2 else None


def call_criterion(state: dict, criterion: Any, y_pred: Any, y_true: Any) -> Any:
    """Compute the loss: ``criterion(state)`` or ``criterion(*y_pred, *y_true)``.

    Raises:
        CriterionError: the criterion failed on the prediction and target (both are described),
            or returned a loss that is not a single value.
    """
    try:
        takes_state = _STATE_CRITERION.get(criterion)
    except TypeError:
        takes_state = None
    if takes_state is None:
        takes_state = _takes_state(criterion)
        if takes_state is not None:
            _remember(_STATE_CRITERION, criterion, takes_state)
    if takes_state is None:
        try:
            loss = criterion(state)
            _remember(_STATE_CRITERION, criterion, True)
        except TypeError:
            loss = _call_on_outputs(criterion, y_pred, y_true)
            _remember(_STATE_CRITERION, criterion, False)
    elif takes_state:
        loss = criterion(state)
    else:
        loss = _call_on_outputs(criterion, y_pred, y_true)
    if isinstance(loss, torch.Tensor) and loss.numel() != 1:
        raise CriterionError(
            f"the criterion returned a loss of shape {tuple(loss.shape)}; a single value is needed to "
            "call backward. Use a reduction such as reduction='mean', or reduce it in your criterion"
        )
    return loss


def _call_on_outputs(criterion: Any, y_pred: Any, y_true: Any) -> Any:
    predictions = list(y_pred) if isinstance(y_pred, (list, tuple)) else [y_pred]
    targets = list(y_true) if isinstance(y_true, (list, tuple)) else [y_true]
    try:
        return criterion(*predictions, *targets)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        name = getattr(criterion, "__name__", type(criterion).__name__)
        raise CriterionError(
            f"the criterion {name} failed on the prediction ({describe(y_pred)}) and the target "
            f"({describe(y_true)}): {error}. Check that the model's output matches the target's shape and "
            "dtype (e.g. class-index int64 targets for CrossEntropyLoss, float targets like the output for MSELoss)"
        ) from error
