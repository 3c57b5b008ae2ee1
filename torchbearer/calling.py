"""How a model and a criterion are called, decided once per callable by inspecting its signature.

torchbearer 0.5 called ``model(*x, state=state)`` and, on any error, retried without the state,
running a failing forward twice. Here the decision is made from the ``forward`` signature (a
parameter named ``state`` or ``**kwargs``) and cached; only callables whose signature cannot be
read fall back to the try-then-retry rule.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from torchbearer.devices import unwrap_model
from torchbearer.errors import CriterionError, ModelCallError


class _Decisions(dict):
    """Decisions per callable, keyed by ``id(callable)``: ``{id: True/False}``.

    An entry lives exactly as long as its callable (a weak reference's callback drops it when the
    callable dies, before its id can be reused), so a plain ``get(id(callable))`` finds the decision:
    a dict lookup at C speed, with no hashable key needed and no identity check.
    """

    def __init__(self) -> None:
        super().__init__()
        self._references: dict[int, weakref.ref] = {}

    def remember(self, key: Any, decision: bool) -> None:
        """Keep ``decision`` for ``key`` while it lives (nothing is kept for an object without weak references)."""
        identity = id(key)
        try:
            self._references[identity] = weakref.ref(key, lambda _, identity=identity: self._forget(identity))
        except TypeError:  # not weak-referenceable: decide again next time
            return
        self[identity] = decision

    def _forget(self, identity: int) -> None:
        self.pop(identity, None)
        self._references.pop(identity, None)


_PASS_STATE = _Decisions()
_STATE_CRITERION = _Decisions()


def always_pass_state(model: Any) -> None:
    """Make ``model`` receive ``state=`` on every call (``Trial(..., pass_state=True)``)."""
    _PASS_STATE.remember(model, True)


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


def describe(value: Any) -> str:
    """A short description of a tensor (shape, dtype, device) or of a structure of them."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of [" + ", ".join(describe(item) for item in value) + "]"
    if isinstance(value, dict):
        return "dict of {" + ", ".join(f"{key!r}: {describe(item)}" for key, item in value.items()) + "}"
    return type(value).__name__ if value is not None else "None"


_DEVICE_HINT = ". The model and the batch seem to be on different devices: move both with trial.to(device)"


def _without_end_mark(error: Exception) -> str:
    """The error's text without its final full stop or exclamation mark, to continue the sentence."""
    return str(error).rstrip(".!")


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a (nested) batch or output, or None."""
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def _first_parameter(model: Any) -> torch.Tensor | None:
    bare = unwrap_model(model)
    return next(bare.parameters(), None) if isinstance(bare, torch.nn.Module) else None


def _placement_hint(error: Exception, model: Any, x: Any) -> str:
    """Why a forward pass failed when the model and the batch disagree on device or dtype (error path only)."""
    text, parameter, batch = str(error), _first_parameter(model), _first_tensor(x)
    if parameter is None or batch is None:
        return _DEVICE_HINT if "device" in text else ""
    if "device" in text:
        if parameter.device == batch.device:
            return _DEVICE_HINT
        return (
            f". The model is on {parameter.device} but the batch is on {batch.device}: a Trial moves every batch to "
            "its own device, so move the model and the Trial together with trial.to(device) rather than model.to"
        )
    if "dtype" not in text and "scalar type" not in text:
        return ""
    if not batch.is_floating_point() and parameter.is_floating_point():
        return (
            f". The batch is {batch.dtype} but the model's parameters are {parameter.dtype}: give the model "
            "real floating-point input, e.g. build the dataset from x.float()"
        )
    if batch.dtype != parameter.dtype:
        return (
            f". The model's parameters are {parameter.dtype} but batches are cast to the Trial's dtype "
            f"{batch.dtype}: call trial.to({parameter.dtype}) so batches match the model (or convert the model "
            f"with model.to({batch.dtype}))"
        )
    return ""


def _explain_model_error(error: Exception, model: Any, x: Any) -> ModelCallError:
    message = (
        f"calling the model {type(unwrap_model(model)).__name__} on the input ({describe(x)}) failed: "
        f"{_without_end_mark(error)}"
    )
    if x is None:
        message += (
            ". The input is None because this pass has no data: give data with with_train_data / "
            "with_generators / with_loader, or use a model that takes no input"
        )
    else:
        message += _placement_hint(error, model, x)
    return ModelCallError(message)


def _decided(table: _Decisions, key: Any, decide: Callable[[Any], bool | None]) -> bool | None:
    """The decision remembered for ``key``, else ``decide(key)`` (remembered unless it is None)."""
    decision = table.get(id(key))
    if decision is None:
        decision = decide(key)
        if decision is not None:
            table.remember(key, decision)
    return decision


def model_takes_state(model: Any) -> bool | None:
    """Whether :func:`call_model` gives ``model`` the state; None while that is not known (an opaque callable)."""
    return _decided(_PASS_STATE, model, _declares_state)


_MODEL_FAILURES = (RuntimeError, TypeError, ValueError, IndexError)
_SEQUENCES = (list, tuple)  # spread into several arguments


def call_model(state: dict, model: Any, x: Any) -> Any:
    """Run the forward pass: ``model(*x, state=state)`` if it takes state, else ``model(*x)``.

    ``x`` is spread into positional arguments when it is a list or tuple.

    Raises:
        ModelCallError: the forward pass failed; the message names the model and the input.
    """
    args = x if isinstance(x, _SEQUENCES) else (x,)
    takes_state = _PASS_STATE.get(id(model))  # model_takes_state(model), inline: this runs every batch
    if takes_state is None:
        takes_state = model_takes_state(model)
    if takes_state is None:
        return _call_model_and_learn(state, model, args, x)
    try:
        return model(*args, state=state) if takes_state else model(*args)
    except _MODEL_FAILURES as error:
        raise _explain_model_error(error, model, x) from error


def _call_model_and_learn(state: dict, model: Any, args: Sequence, x: Any) -> Any:
    """0.5's rule for opaque callables: try with state, retry without, remember what worked."""
    try:
        output = model(*args, state=state)
        _PASS_STATE.remember(model, True)
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
        _PASS_STATE.remember(model, False)
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


def call_criterion(state: Mapping, criterion: Any, y_pred_key: Any, y_true_key: Any) -> Any:
    """Compute the loss: ``criterion(state)`` or ``criterion(*state[y_pred_key], *state[y_true_key])``.

    A criterion of the state alone is called without reading the prediction or the target, so a
    closure may name a target key that is not in the state (0.5's two-closure GAN does).

    Raises:
        CriterionError: the criterion failed on the prediction and target (both are described),
            returned a loss that is not a single value, or, with gradients enabled (training), returned
            something that is not a tensor or a tensor that does not require grad.
    """
    takes_state = _STATE_CRITERION.get(id(criterion))  # criterion_takes_state(criterion), inline as in call_model
    if takes_state is None:
        takes_state = criterion_takes_state(criterion)
    if takes_state is None:  # an opaque callable: 0.5's rule, try the state first and remember what worked
        try:
            loss = criterion(state)
            _STATE_CRITERION.remember(criterion, True)
        except TypeError:
            loss = _call_on_outputs(criterion, state[y_pred_key], state[y_true_key])
            _STATE_CRITERION.remember(criterion, False)
    elif takes_state:
        loss = criterion(state)
    else:
        loss = _call_on_outputs(criterion, state[y_pred_key], state[y_true_key])
    if type(loss) is torch.Tensor and loss.requires_grad and loss.numel() == 1:  # a training loss: nothing to check
        return loss
    return checked_loss(criterion, loss, state.get(y_pred_key))


def criterion_takes_state(criterion: Any) -> bool | None:
    """Whether :func:`call_criterion` calls ``criterion(state)`` (else on the outputs); None while not known."""
    return _decided(_STATE_CRITERION, criterion, _takes_state)


def checked_loss(criterion: Any, loss: Any, y_pred: Any) -> Any:
    """``loss`` if backward can use it (a single value that requires grad when gradients are on).

    Raises:
        CriterionError: the loss is not a tensor (in training), has more than one value, or does not
            require grad in training.
    """
    if not isinstance(loss, torch.Tensor):
        if torch.is_grad_enabled():  # training: backward needs a tensor
            raise CriterionError(
                f"the criterion {_name(criterion)} returned a {type(loss).__name__}, not a tensor, so there is "
                "nothing to call backward on. Compute the loss with torch operations on the model's output and "
                "return the tensor (no .item(), float() or .tolist())"
            )
        return loss
    if loss.numel() != 1:
        raise CriterionError(
            f"the criterion returned a loss of shape {tuple(loss.shape)}; a single value is needed to "
            "call backward. Use a reduction such as reduction='mean', or reduce it in your criterion"
        )
    if not loss.requires_grad and torch.is_grad_enabled():  # two attribute reads, no device sync
        raise _no_gradient_error(criterion, y_pred)
    return loss


def _name(criterion: Any) -> str:
    return getattr(criterion, "__name__", type(criterion).__name__)


def _no_gradient_error(criterion: Any, y_pred: Any) -> CriterionError:
    prediction = _first_tensor(y_pred)
    if prediction is not None and prediction.requires_grad:
        cause = (
            "the model's output does, so the criterion cut the graph: do not use .detach(), .item(), .numpy() "
            "or torch.tensor(...) on the output inside the criterion"
        )
    else:
        cause = (
            "neither does the model's output: check that the model has trainable parameters "
            "(requires_grad=True) and that its forward does not run under torch.no_grad()"
        )
    return CriterionError(
        f"the loss returned by the criterion {_name(criterion)} does not require grad, so backward cannot "
        f"compute gradients from it; {cause}"
    )


def _is_classification(criterion: Any) -> bool:
    """True for losses over class indices (CrossEntropyLoss, NLLLoss and their functional forms)."""
    if isinstance(criterion, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)):
        return True
    return getattr(criterion, "__name__", "") in ("cross_entropy", "nll_loss")


def _target_hint(criterion: Any, y_pred: Any, y_true: Any, error: Exception) -> str:
    """The likely fix when a criterion fails on a single prediction and target (error path only)."""
    text = str(error)
    if not isinstance(y_pred, torch.Tensor) or not isinstance(y_true, torch.Tensor):
        return _GENERIC_TARGET_HINT
    if "multi-target" in text and y_true.dim() == 2 and y_true.shape[-1] == 1:
        return (
            f"The target has shape {tuple(y_true.shape)} but class-index targets must have shape "
            f"({y_true.shape[0]},): squeeze it, e.g. y.squeeze(1) or y.view(-1)"
        )
    if "out of bounds" in text and y_pred.dim() >= 2:
        return (
            f"Class indices must lie in [0, {y_pred.shape[1]}), the size of the model's output dim 1: make the "
            "model output one score per class, or remap the labels"
        )
    if y_true.is_floating_point() and (_is_classification(criterion) or "Long" in text):
        return (
            f"The target is {y_true.dtype} but class-index int64 targets for CrossEntropyLoss (and NLLLoss) are "
            "expected: convert them with y.long(), or give class probabilities of the output's shape"
        )
    if not y_true.is_floating_point() and y_pred.is_floating_point():
        return (
            f"The target is {y_true.dtype} but this criterion needs floating-point targets like the output "
            f"({y_pred.dtype}): convert them with y.float()"
        )
    if y_pred.shape != y_true.shape:
        return (
            f"The model's output has shape {tuple(y_pred.shape)} and the target {tuple(y_true.shape)}: make the "
            "model's last layer produce the target's shape (or reshape the target)"
        )
    return _GENERIC_TARGET_HINT


_GENERIC_TARGET_HINT = (
    "Check that the model's output matches the target's shape and dtype (e.g. class-index int64 targets for "
    "CrossEntropyLoss, float targets like the output for MSELoss)"
)


def _as_code(criterion: Any) -> str:
    """How the user probably wrote the criterion: ``CrossEntropyLoss()`` for a module, the name of a function."""
    return repr(criterion) if isinstance(criterion, torch.nn.Module) else _name(criterion)


def _takes_arguments(criterion: Any, arguments: Sequence) -> bool:
    """Whether the criterion's signature accepts ``arguments`` (True when the signature cannot be read)."""
    signature = _signature(criterion.forward if isinstance(criterion, torch.nn.Module) else criterion)
    try:
        return signature is None or bool(signature.bind(*arguments))
    except TypeError:
        return False


def _call_hint(criterion: Any, y_pred: Any, y_true: Any, arguments: Sequence, error: Exception) -> str:
    """The likely fix when a criterion fails on the outputs: how they reached it, else the target's (error path)."""
    pick = "e.g. criterion=lambda y_pred, y_true: loss(y_pred[{}], y_true) with loss = " + _as_code(criterion)
    if isinstance(y_pred, dict) and (isinstance(criterion, torch.nn.Module) or "dict" in str(error)):
        return (
            f"The model returned a dict, and the criterion received the whole dict as the prediction: pick the "
            f"output to compare, {pick.format(repr(next(iter(y_pred), 'name')))}"
        )
    if _takes_arguments(criterion, arguments):
        return _target_hint(criterion, y_pred, y_true, error)
    if isinstance(y_pred, (list, tuple)):
        outputs = [f"output{index}" for index in range(len(y_pred))]
        target_count = len(arguments) - len(y_pred)
        targets = ["y_true"] if target_count <= 1 else [f"target{index}" for index in range(target_count)]
        spread = (
            f"e.g. criterion=lambda {', '.join(outputs + targets)}: loss(output0, {targets[0]}) "
            f"with loss = {_as_code(criterion)}"
        )
        return (
            f"The model returned a {type(y_pred).__name__} of {len(y_pred)} outputs, which the criterion received as "
            f"{len(y_pred)} arguments before the target ({len(arguments)} in all): pick the output to compare, "
            f"{spread}, or write a criterion that takes all {len(arguments)}"
        )
    signature = _signature(criterion.forward if isinstance(criterion, torch.nn.Module) else criterion)
    return (
        f"The criterion {_name(criterion)}{signature} cannot take the {len(arguments)} arguments it is called with: "
        "a criterion is called as criterion(y_pred, y_true) (tuples spread into several arguments), or as "
        "criterion(state) when it has exactly one required argument. Change its signature to one of these"
    )


def _call_on_outputs(criterion: Any, y_pred: Any, y_true: Any) -> Any:
    predictions = y_pred if isinstance(y_pred, _SEQUENCES) else (y_pred,)
    targets = y_true if isinstance(y_true, _SEQUENCES) else (y_true,)
    try:
        return criterion(*predictions, *targets)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        hint = _call_hint(criterion, y_pred, y_true, (*predictions, *targets), error)
        raise CriterionError(
            f"the criterion {_name(criterion)} failed on the prediction ({describe(y_pred)}) and the target "
            f"({describe(y_true)}): {_without_end_mark(error)}. {hint}"
        ) from error
