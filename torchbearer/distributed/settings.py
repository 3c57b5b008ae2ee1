"""How a Trial scales out: :class:`DistributedSettings`, stored in the Trial's state under :data:`DISTRIBUTED`.

``Trial.with_distributed`` calls :func:`configure`; :func:`torchbearer.distributed.prepare` fills in the
rest at the first call that runs a pass. Every other module of the package reads the settings through
:func:`settings_of`, which is why they live on their own, below all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torchbearer.errors import ConfigurationError
from torchbearer.state import state_key

DISTRIBUTED = state_key("distributed")
"""State key of the Trial's :class:`DistributedSettings`."""

PREEMPTION = state_key("preemption")
"""State key of the Trial's :class:`torchbearer.distributed.preemption.Preemption` (``Trial.with_preemption``)."""

STRATEGIES = ("ddp", "fsdp")
STATE_DICT_TYPES = ("full", "sharded")
DEFAULT_TIMEOUT = 600.0
"""Seconds a collective may wait for the other ranks before the job fails (``with_distributed(timeout=...)``)."""


@dataclass
class DistributedSettings:
    """How a Trial scales out; set with ``Trial.with_distributed``, filled in by :func:`prepare`.

    Attributes:
        enabled: ``None`` (automatic: on under ``torchrun`` or an initialised group of more than one
            rank), ``True`` (the same, stated) or ``False`` (off: the Trial acts as a single process).
        strategy: ``'ddp'`` (DistributedDataParallel) or ``'fsdp'`` (FSDP2 ``fully_shard``).
        backend: Process group backend; ``None`` picks ``gloo`` on CPU and ``cpu:gloo,cuda:nccl`` on CUDA.
        timeout: Seconds a collective waits for the other ranks before failing.
        shard_modules: FSDP: submodule classes sharded as their own units (e.g. transformer blocks).
        state_dict_type: FSDP: ``'full'`` (checkpoints hold the whole model, written by rank zero) or
            ``'sharded'`` (each rank writes its shard with ``torch.distributed.checkpoint``).
        async_save: FSDP with sharded state dicts: checkpoints are written in the background
            (``torch.distributed.checkpoint.async_save``) while training goes on.
        wrapper_kwargs: Passed to ``DistributedDataParallel`` or ``fully_shard``.
        active: Whether the Trial runs distributed (set by :func:`prepare`).
        cpu_group: The process group for end-of-pass values on the CPU (``None``: the default group).
        checkpoint_group: With ``async_save``, the gloo group the background writes use, apart from training's.
        pending_save: With ``async_save``, the checkpoint being written (set by the checkpoint module).
    """

    enabled: bool | None = None
    strategy: str = "ddp"
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    shard_modules: tuple[type, ...] = ()
    state_dict_type: str = "full"
    async_save: bool = False
    wrapper_kwargs: dict = field(default_factory=dict)
    active: bool = False
    cpu_group: Any = None
    checkpoint_group: Any = None
    pending_save: Any = None

    def is_sharded(self) -> bool:
        """True when checkpoints are written shard by shard (FSDP with ``state_dict_type='sharded'``)."""
        return self.active and self.strategy == "fsdp" and self.state_dict_type == "sharded"


def configure(
    state: dict,
    enabled: bool = True,
    strategy: str = "ddp",
    *,
    backend: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    shard_modules: Sequence[type] = (),
    state_dict_type: str = "full",
    async_save: bool = False,
    **wrapper_kwargs: Any,
) -> DistributedSettings:
    """Store the distributed settings of a Trial in its ``state`` (what ``Trial.with_distributed`` calls).

    Args:
        state: The Trial's state.
        enabled: ``False`` turns the automation off; ``True`` keeps it on (it still does nothing in a
            single process).
        strategy: ``'ddp'`` or ``'fsdp'``.
        backend: Process group backend, when the Trial initialises the group.
        timeout: Seconds a collective waits for the other ranks before the job fails.
        shard_modules: FSDP: submodule classes to shard as separate units before the whole model.
        state_dict_type: FSDP: ``'full'`` or ``'sharded'`` checkpoints.
        async_save: FSDP with ``state_dict_type='sharded'``: write checkpoints in the background; the next
            save (or loading) waits for the previous one.
        **wrapper_kwargs: Passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``) or
            to ``fully_shard`` (e.g. ``reshard_after_forward=False``).

    Returns:
        The settings stored under :data:`DISTRIBUTED`.

    Raises:
        ConfigurationError: An unknown strategy or state dict type, a timeout that is not positive, or
            ``async_save`` without sharded FSDP checkpoints.
    """
    if strategy not in STRATEGIES:
        raise ConfigurationError(f"distributed strategy {strategy!r} is unknown; use one of {STRATEGIES}")
    if state_dict_type not in STATE_DICT_TYPES:
        raise ConfigurationError(
            f"state_dict_type {state_dict_type!r} is unknown; use 'full' (one file, written by rank zero) or "
            "'sharded' (one folder, each rank writes its shard)"
        )
    if async_save and (strategy, state_dict_type) != ("fsdp", "sharded"):
        raise ConfigurationError(
            "async_save=True writes sharded checkpoints in the background; use it with strategy='fsdp' and "
            f"state_dict_type='sharded' (got strategy={strategy!r}, state_dict_type={state_dict_type!r})"
        )
    if not timeout > 0:
        raise ConfigurationError(f"the distributed timeout must be a positive number of seconds, got {timeout!r}")
    settings = DistributedSettings(
        enabled=bool(enabled), strategy=strategy, backend=backend, timeout=float(timeout),
        shard_modules=tuple(shard_modules), state_dict_type=state_dict_type, async_save=bool(async_save),
        wrapper_kwargs=dict(wrapper_kwargs),
    )  # fmt: skip
    previous = state.get(DISTRIBUTED)
    if previous is not None and previous.active:
        raise ConfigurationError(
            "with_distributed must be called before the first run/evaluate/predict: the model and loaders are "
            "already distributed"
        )
    state[DISTRIBUTED] = settings
    return settings


def settings_of(state: Mapping) -> DistributedSettings | None:
    """The Trial's distributed settings in ``state``, if any."""
    return state.get(DISTRIBUTED) if hasattr(state, "get") else None
