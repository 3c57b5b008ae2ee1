"""Weight initialisation callbacks; each acts once, in ``on_init``, when the ``Trial`` is built.

Example:
    >>> from torchbearer.callbacks import init
    >>> trial = Trial(model, optimizer, loss, callbacks=[init.KaimingNormal(), init.ZeroBias()])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.parameter import is_lazy

import torchbearer
from torchbearer.bases import Callback, cite
from torchbearer.callbacks.lsuv import LSUV, WeightLambda

_KAIMING_BIBTEX = """
@inproceedings{he2015delving,
  title={Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet Classification},
  author={He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle={Proceedings of the IEEE International Conference on Computer Vision},
  pages={1026--1034},
  year={2015}
}
"""

_XAVIER_BIBTEX = """
@inproceedings{glorot2010understanding,
  title={Understanding the difficulty of training deep feedforward neural networks},
  author={Glorot, Xavier and Bengio, Yoshua},
  booktitle={Proceedings of the Thirteenth International Conference on Artificial Intelligence and Statistics},
  pages={249--256},
  year={2010}
}
"""

_LSUV_BIBTEX = """
@inproceedings{mishkin2016all,
  title={All you need is a good init},
  author={Mishkin, Dmytro and Matas, Jiri},
  booktitle={International Conference on Learning Representations},
  year={2016}
}
"""

DEFAULT_TARGETS = ["Conv", "Linear", "Bilinear"]
"""Substrings of the class names of the modules the initialisers act on."""


def _for_parameter(name: str, initialise: Callable[[torch.Tensor], Any]) -> Callable[[nn.Module], None]:
    """Turn a tensor initialiser into a module initialiser acting on the parameter ``name``.

    Modules without that parameter (``bias=None``, or a container whose class name happens to
    match, such as a user's ``ConvNet``) and not yet materialised lazy parameters are skipped.
    """

    def initialise_module(module: nn.Module) -> None:
        parameter = getattr(module, name, None)
        if isinstance(parameter, torch.Tensor) and not is_lazy(parameter):
            initialise(parameter)

    return initialise_module


class WeightInit(Callback):
    """Apply ``initialiser`` to every module whose class name contains one of ``targets``.

    Runs in ``on_init``, i.e. when the ``Trial`` is constructed.

    Args:
        initialiser: Called with each matching module.
        modules: The modules to consider; ``None`` means every module of ``state[MODEL]``.
        targets: Case-sensitive substrings of class names (``'Conv'`` matches ``Conv2d`` and
            ``ConvTranspose2d``).

    Example:
        >>> WeightInit(lambda module: nn.init.normal_(module.weight, std=0.01), targets=['Linear'])
    """

    def __init__(
        self,
        initialiser: Callable[[nn.Module], Any] = lambda module: module,
        modules: Optional[Iterable[nn.Module]] = None,
        targets: list[str] = DEFAULT_TARGETS,
    ) -> None:
        self.initialiser = initialiser
        self.modules = list(modules) if modules is not None else None
        self.targets = list(targets)

    def _matches(self, module: nn.Module) -> bool:
        class_name = type(module).__name__
        return any(target in class_name for target in self.targets)

    def on_init(self, state: dict) -> None:
        """Initialise the matching modules."""
        modules = self.modules if self.modules is not None else state[torchbearer.MODEL].modules()
        for module in modules:
            if self._matches(module):
                self.initialiser(module)


@cite(_KAIMING_BIBTEX)
class KaimingNormal(WeightInit):
    """Kaiming (He) normal initialisation of ``module.weight`` (``torch.nn.init.kaiming_normal_``).

    Matching modules without a weight are skipped.

    Args:
        a: Negative slope of the rectifier after the layer (for ``'leaky_relu'``).
        mode: ``'fan_in'`` keeps forward variance, ``'fan_out'`` backward variance.
        nonlinearity: The non-linearity after the layer, e.g. ``'relu'`` or ``'leaky_relu'``.
        modules: The modules to consider; ``None`` means the whole model.
        targets: Class-name substrings of the modules to initialise.
    """

    def __init__(
        self,
        a: float = 0,
        mode: str = "fan_in",
        nonlinearity: str = "leaky_relu",
        modules: Optional[Iterable[nn.Module]] = None,
        targets: list[str] = DEFAULT_TARGETS,
    ) -> None:
        initialise = partial(nn.init.kaiming_normal_, a=a, mode=mode, nonlinearity=nonlinearity)
        super().__init__(_for_parameter("weight", initialise), modules=modules, targets=targets)


@cite(_KAIMING_BIBTEX)
class KaimingUniform(WeightInit):
    """Kaiming (He) uniform initialisation of ``module.weight`` (``torch.nn.init.kaiming_uniform_``).

    Matching modules without a weight are skipped.

    Args:
        a: Negative slope of the rectifier after the layer (for ``'leaky_relu'``).
        mode: ``'fan_in'`` keeps forward variance, ``'fan_out'`` backward variance.
        nonlinearity: The non-linearity after the layer, e.g. ``'relu'`` or ``'leaky_relu'``.
        modules: The modules to consider; ``None`` means the whole model.
        targets: Class-name substrings of the modules to initialise.
    """

    def __init__(
        self,
        a: float = 0,
        mode: str = "fan_in",
        nonlinearity: str = "leaky_relu",
        modules: Optional[Iterable[nn.Module]] = None,
        targets: list[str] = DEFAULT_TARGETS,
    ) -> None:
        initialise = partial(nn.init.kaiming_uniform_, a=a, mode=mode, nonlinearity=nonlinearity)
        super().__init__(_for_parameter("weight", initialise), modules=modules, targets=targets)


@cite(_XAVIER_BIBTEX)
class XavierNormal(WeightInit):
    """Xavier (Glorot) normal initialisation of ``module.weight`` (``torch.nn.init.xavier_normal_``).

    Matching modules without a weight are skipped.

    Args:
        gain: Scaling factor for the standard deviation.
        modules: The modules to consider; ``None`` means the whole model.
        targets: Class-name substrings of the modules to initialise.
    """

    def __init__(
        self, gain: float = 1, modules: Optional[Iterable[nn.Module]] = None, targets: list[str] = DEFAULT_TARGETS
    ) -> None:
        initialise = partial(nn.init.xavier_normal_, gain=gain)
        super().__init__(_for_parameter("weight", initialise), modules=modules, targets=targets)


@cite(_XAVIER_BIBTEX)
class XavierUniform(WeightInit):
    """Xavier (Glorot) uniform initialisation of ``module.weight`` (``torch.nn.init.xavier_uniform_``).

    Matching modules without a weight are skipped.

    Args:
        gain: Scaling factor for the bound of the distribution.
        modules: The modules to consider; ``None`` means the whole model.
        targets: Class-name substrings of the modules to initialise.
    """

    def __init__(
        self, gain: float = 1, modules: Optional[Iterable[nn.Module]] = None, targets: list[str] = DEFAULT_TARGETS
    ) -> None:
        initialise = partial(nn.init.xavier_uniform_, gain=gain)
        super().__init__(_for_parameter("weight", initialise), modules=modules, targets=targets)


class ZeroBias(WeightInit):
    """Set ``module.bias`` to zero on the matching modules; modules without a bias are skipped.

    Args:
        modules: The modules to consider; ``None`` means the whole model.
        targets: Class-name substrings of the modules to initialise.
    """

    def __init__(self, modules: Optional[Iterable[nn.Module]] = None, targets: list[str] = DEFAULT_TARGETS) -> None:
        super().__init__(_for_parameter("bias", nn.init.zeros_), modules=modules, targets=targets)


@cite(_LSUV_BIBTEX)
class LsuvInit(Callback):
    """Layer-sequential unit-variance initialisation of ``state[MODEL]`` (see :class:`LSUV`), in ``on_init``.

    Zeroing the biases first (put :class:`ZeroBias` before this callback) helps it converge.

    Args:
        data_item: A batch the model accepts, representative of the training data.
        weight_lambda: Returns the tensor to rescale for a layer; defaults to ``layer.weight``.
        needed_std: Target standard deviation of each layer's output.
        std_tol: Accepted distance from ``needed_std``.
        max_attempts: Most rescalings per layer.
        do_orthonorm: Whether to start every layer from orthonormal weights.

    Example:
        >>> trial = Trial(model, optimizer, loss, callbacks=[ZeroBias(), LsuvInit(next(iter(loader))[0])])
    """

    def __init__(
        self,
        data_item: Any,
        weight_lambda: Optional[WeightLambda] = None,
        needed_std: float = 1.0,
        std_tol: float = 0.1,
        max_attempts: int = 10,
        do_orthonorm: bool = True,
    ) -> None:
        self.data_item = data_item
        self.weight_lambda = weight_lambda
        self.needed_std = needed_std
        self.std_tol = std_tol
        self.max_attempts = max_attempts
        self.do_orthonorm = do_orthonorm

    def on_init(self, state: dict) -> None:
        """Initialise the model on ``data_item``."""
        state[torchbearer.MODEL] = LSUV().init_model(
            state[torchbearer.MODEL],
            self.data_item,
            self.weight_lambda,
            self.needed_std,
            self.std_tol,
            self.max_attempts,
            self.do_orthonorm,
        )
