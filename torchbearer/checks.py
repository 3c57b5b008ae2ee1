"""Checks of the arguments users give a Trial: each refuses what cannot work and names the fix.

They run once, when the Trial is built or configured, never per batch.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch
from torch.utils.data import TensorDataset

from torchbearer.devices import unwrap_model
from torchbearer.errors import ConfigurationError, ConfigurationTypeError, TorchbearerWarning
from torchbearer.injection import MockOptimizer, ZeroLoss
from torchbearer.state import CRITERION, LOSS, MODEL, OPTIMIZER


def check_trial_arguments(model: Any, optimizer: Any, criterion: Any, verbose: Any) -> None:
    """Refuse constructor arguments that cannot work, naming the fix (see :class:`Trial`)."""
    order = "the arguments are Trial(model, optimizer, criterion, metrics, callbacks)"
    if isinstance(model, type):
        raise ConfigurationTypeError(
            f"model {model.__name__} is a class, not a model: instantiate it, e.g. Trial({model.__name__}(...), ...)"
        )
    if isinstance(model, torch.optim.Optimizer):
        raise ConfigurationTypeError(f"model is the optimizer {type(model).__name__}: {order}")
    if isinstance(optimizer, type):
        raise ConfigurationTypeError(
            f"optimizer {optimizer.__name__} is a class, not an optimizer: build it over the model's parameters, "
            f"e.g. {optimizer.__name__}(model.parameters(), lr=0.01)"
        )
    if optimizer is not None and not (hasattr(optimizer, "step") and hasattr(optimizer, "zero_grad")):
        raise ConfigurationTypeError(
            f"optimizer {type(optimizer).__name__} is not an optimizer (it has no step() and zero_grad()): pass a "
            f"torch.optim.Optimizer such as torch.optim.SGD(model.parameters(), lr=0.01); {order}"
        )
    if isinstance(criterion, type):
        raise ConfigurationTypeError(
            f"criterion {criterion.__name__} is a class, not a loss: instantiate it, "
            f"e.g. criterion={criterion.__name__}()"
        )
    if criterion is not None and not callable(criterion):
        raise ConfigurationTypeError(
            f"criterion {criterion!r} of type {type(criterion).__name__} is not callable: pass a loss such as "
            f"torch.nn.CrossEntropyLoss(), or a function f(y_pred, y_true) or f(state); {order}"
        )
    if not isinstance(verbose, numbers.Integral):
        raise ConfigurationTypeError(
            f"verbose must be an int, got {verbose!r}: 2 for a progress bar per pass, 1 for one bar over the "
            "epochs, 0 for silence"
        )


def warn_if_optimizer_misses_model(model: Any, optimizer: Any) -> None:
    """Warn when the optimizer holds none of the model's parameters (compared by identity, once)."""
    bare = unwrap_model(model)
    if not isinstance(bare, torch.nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        return
    if isinstance(optimizer, MockOptimizer):
        return
    model_parameters = {id(parameter) for parameter in bare.parameters()}
    held = [id(parameter) for group in optimizer.param_groups for parameter in group["params"]]
    if not model_parameters or not held or not model_parameters.isdisjoint(held):
        return
    name = type(optimizer).__name__
    warnings.warn(
        f"the optimizer {name} holds none of the parameters of the model {type(bare).__name__}, so training will "
        f"not change the model. Build the optimizer from this model, e.g. {name}(model.parameters(), ...), after "
        "creating the model (re-creating the model after its optimizer is the usual cause); ignore this if the "
        "optimizer trains other tensors on purpose",
        TorchbearerWarning,
        stacklevel=3,
    )


def _has_trainable_parameters(model: Any) -> bool:
    bare = unwrap_model(model)
    return isinstance(bare, torch.nn.Module) and any(parameter.requires_grad for parameter in bare.parameters())


def warn_if_nothing_steps(model: Any, optimizer: Any, own_closure: bool, stacklevel: int) -> None:
    """Warn when ``run`` will train a model with trainable parameters but no optimizer was given.

    A closure of the user's own (``with_closure``) may step optimizers of its own, so it is trusted.
    """
    if own_closure or not isinstance(optimizer, MockOptimizer) or not _has_trainable_parameters(model):
        return
    warnings.warn(
        f"this Trial has no optimizer (optimizer=None), so run() leaves the weights of the model "
        f"{type(unwrap_model(model)).__name__} unchanged. Pass one, e.g. Trial(model, "
        "torch.optim.SGD(model.parameters(), lr=0.01), criterion); to measure the model without training it, "
        "use evaluate(). Ignore this if a callback updates the weights",
        TorchbearerWarning,
        stacklevel=stacklevel,
    )


def warn_if_loss_stayed_zero(state: dict, stacklevel: int) -> None:
    """Warn, after a training pass, when the loss was the default zero throughout: no criterion was given and
    no callback added to the loss. Reads only what :class:`~torchbearer.injection.ZeroLoss` noted (no device sync).
    """
    criterion = state[CRITERION]
    if not isinstance(criterion, ZeroLoss) or not criterion.gave_a_loss:
        return
    if criterion.changed or criterion.was_changed(state.get(LOSS)):
        return
    if isinstance(state[OPTIMIZER], MockOptimizer) and not _has_trainable_parameters(state[MODEL]):
        return  # nothing to train: the Trial drives callbacks over data
    warnings.warn(
        "the loss stayed 0 for a whole training pass: this Trial has no criterion (criterion=None) and no callback "
        "added to state[LOSS], so training cannot change the model. Pass a criterion, e.g. Trial(model, optimizer, "
        "nn.MSELoss()) or nn.CrossEntropyLoss(), or add a loss term with @torchbearer.callbacks.add_to_loss",
        TorchbearerWarning,
        stacklevel=stacklevel,
    )


def tensor_dataset(method: str, **tensors: Any) -> TensorDataset:
    """A TensorDataset for ``with_*_data``, after checking that it gets tensors of one length."""
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ConfigurationTypeError(
                f"{method} needs tensors, got {name} of type {type(tensor).__name__}: convert it with "
                f"torch.as_tensor({name}), or pass a DataLoader to the matching with_*_generator"
            )
        if tensor.dim() == 0:
            raise ConfigurationError(f"{method} got a 0-dimensional {name}: dim 0 must index the samples")
    lengths = {name: len(tensor) for name, tensor in tensors.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigurationError(
            f"{method} got {' and '.join(f'{len_} samples in {name}' for name, len_ in lengths.items())}: x and y "
            "must have the same length along dim 0 (one target per input)"
        )
    return TensorDataset(*tensors.values())


def require_callable(method: str, value: Any, expected: str) -> None:
    if not callable(value):
        raise ConfigurationTypeError(f"{method} needs {expected}, got {value!r} of type {type(value).__name__}")
