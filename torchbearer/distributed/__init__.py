"""Scaling out on ``torch.distributed``: an unchanged Trial script trains data-parallel under ``torchrun``.

At the start of ``run``, ``evaluate`` and ``predict`` the Trial calls :func:`prepare`. When the script was
launched by ``torchrun`` (or a process group with more than one rank is already initialised) and the
automation is not switched off with ``Trial.with_distributed(False)``, it:

* initialises the process group if needed (``gloo`` on CPU, ``nccl`` for CUDA tensors plus ``gloo`` for
  CPU ones), with a timeout, so a rank that stops answering ends the job instead of hanging it, and under
  a key prefix new to every group, so a group that torchrun restarts forms reliably (:func:`round_store`);
* moves a CUDA trial to ``cuda:LOCAL_RANK`` (a CPU trial stays on the CPU);
* wraps the model in ``DistributedDataParallel`` (or shards it with FSDP2's ``fully_shard``); a model the
  user already wrapped is used as it is;
* gives every ``DataLoader`` a sampler for this rank, keeping its batch size (now per rank), shuffling,
  ``drop_last``, ``collate_fn``, workers and ``pin_memory``. Training draws each epoch's order as one
  process would and gives each rank every ``world_size``-th sample of it (:class:`InterleavedSampler`), so
  N ranks with batch B/N train on one process's batches of B. Evaluation and prediction give each rank a
  contiguous block of whole batches and never pad, so no sample counts twice.

Metric aggregates (:mod:`torchbearer.metrics.aggregators`, ``EpochLambda``) combine their sums and counts
across ranks at the end of a pass (:func:`cross_rank`), so every rank sees the metrics of the whole data.
Files and printing happen on rank zero (:func:`is_rank_zero`); checkpoints are written by rank zero and the
other ranks wait at a barrier, or each rank writes its shards (:func:`save_checkpoint`). With
``Trial.with_preemption`` a SIGTERM makes every rank checkpoint at the same step and exit
(:mod:`~torchbearer.distributed.preemption`).

The package holds one concern per module, each importing only those listed before it:

* :mod:`~torchbearer.distributed.settings`: ``DistributedSettings`` and ``configure``;
* :mod:`~torchbearer.distributed.elastic`: a store prefix new to every group torchrun (re)starts;
* :mod:`~torchbearer.distributed.process_group`: torchrun detection, the process group, ranks, stop agreement;
* :mod:`~torchbearer.distributed.wrapping`: placing the model on the rank's device, DDP and FSDP2;
* :mod:`~torchbearer.distributed.samplers`: the per-rank samplers and rebuilt loaders;
* :mod:`~torchbearer.distributed.reduction`: end-of-pass values combined across ranks;
* :mod:`~torchbearer.distributed.preparation`: ``prepare``, which applies the above to a Trial;
* :mod:`~torchbearer.distributed.checkpoints`: state dicts, per-rank state, saving and loading checkpoints;
* :mod:`~torchbearer.distributed.preemption`: on SIGTERM, a checkpoint at an agreed step, then exit.
"""

from torchbearer.distributed.checkpoints import (
    CURRENT_FILE,
    PER_RANK_KEY,
    TRIAL_FILE,
    checkpoint_folder,
    load_checkpoint,
    load_model_state_dict,
    load_optimizer_state_dict,
    model_state_dict,
    optimizer_state_dict,
    own_state,
    per_rank_states,
    remove_checkpoint,
    save_checkpoint,
    wait_for_checkpoint,
)
from torchbearer.distributed.elastic import round_store
from torchbearer.distributed.preemption import PREEMPTED_EXIT_CODE, Preempted, Preemption, handle_preemption
from torchbearer.distributed.preparation import prepare
from torchbearer.distributed.process_group import (
    agree_to_stop,
    barrier,
    get_rank,
    get_world_size,
    is_initialized,
    is_rank_zero,
    launch_environment,
    stop_agreement,
)
from torchbearer.distributed.reduction import CrossRank, cross_rank, gather_predictions
from torchbearer.distributed.samplers import (
    EpochOrder,
    EvaluationSampler,
    EvenBatchSampler,
    InterleavedSampler,
    shard_loader,
)
from torchbearer.distributed.settings import (
    DEFAULT_TIMEOUT,
    DISTRIBUTED,
    PREEMPTION,
    STATE_DICT_TYPES,
    STRATEGIES,
    DistributedSettings,
    configure,
    settings_of,
)
from torchbearer.distributed.wrapping import is_distributed_model, is_fsdp_model

__all__ = [
    "CURRENT_FILE",
    "DEFAULT_TIMEOUT",
    "DISTRIBUTED",
    "PER_RANK_KEY",
    "PREEMPTED_EXIT_CODE",
    "PREEMPTION",
    "STATE_DICT_TYPES",
    "STRATEGIES",
    "TRIAL_FILE",
    "CrossRank",
    "DistributedSettings",
    "EpochOrder",
    "EvaluationSampler",
    "EvenBatchSampler",
    "InterleavedSampler",
    "Preempted",
    "Preemption",
    "agree_to_stop",
    "barrier",
    "checkpoint_folder",
    "configure",
    "cross_rank",
    "gather_predictions",
    "handle_preemption",
    "get_rank",
    "get_world_size",
    "is_distributed_model",
    "is_fsdp_model",
    "is_initialized",
    "is_rank_zero",
    "launch_environment",
    "load_checkpoint",
    "load_model_state_dict",
    "load_optimizer_state_dict",
    "model_state_dict",
    "optimizer_state_dict",
    "own_state",
    "per_rank_states",
    "prepare",
    "remove_checkpoint",
    "round_store",
    "save_checkpoint",
    "settings_of",
    "shard_loader",
    "stop_agreement",
    "wait_for_checkpoint",
]
