"""A store for the process group that a group restarted by ``torchrun`` shares with no earlier group.

Why: under ``torchrun`` the workers start their process group on the elastic agent's TCPStore
(``TORCHELASTIC_USE_AGENT_STORE=True``), and the agent keeps that store for the whole job. When a worker
dies and the agent restarts the group, the new workers write their keys (gloo's listening addresses, NCCL's
unique id, barrier counters) under the same names the dead ones used, and a worker that reads a key before
its peer has rewritten it gets the dead peer's value. With gloo that is the address of a socket that no
longer exists: ``Gloo connectFullMesh failed ... Connection refused``, and the job is lost (in about half
of all restarts on a busy machine, see ``docs/scaling-out.md``).

The fix is a key prefix that is new for every group: :func:`round_store` makes the ranks of a group agree
on a generation number, counted in the agent's store, and returns the store under the prefix of that
generation. A rank cannot tell a stale key from a fresh one by its value, so the agreement goes by
counting: rank zero opens a new generation; every other rank joins the generation it reads and is
admitted once all ``world_size - 1`` have joined. A rank that read a dead group's generation sees it
over-full (that group's ranks had joined it already) or never admitted, and joins the new one as soon
as rank zero opens it.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

from torch import distributed as dist

from torchbearer.errors import TorchbearerError

GENERATION_KEY = "torchbearer/generation"
_POLL_SECONDS = 0.05


def uses_agent_store() -> bool:
    """True when ``torchrun``'s agent hosts the store the workers start their group on (it outlives restarts)."""
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)


def round_store(timeout: float) -> tuple[Any, int, int] | None:
    """The agent's store under a prefix new to this group, with this worker's rank and the world size.

    Args:
        timeout: Seconds to wait for the other ranks.

    Returns:
        ``(store, rank, world_size)`` for ``init_process_group(store=...)``, or ``None`` when the workers
        do not share the agent's store (not under ``torchrun``, or the agent's store sharing is off).

    Raises:
        TorchbearerError: The ranks did not agree within ``timeout`` seconds.
    """
    if not uses_agent_store():
        return None
    environment = os.environ
    rank, world_size = int(environment["RANK"]), int(environment["WORLD_SIZE"])
    store = dist.TCPStore(
        environment["MASTER_ADDR"], int(environment["MASTER_PORT"]), world_size, is_master=False,
        timeout=datetime.timedelta(seconds=timeout),
    )  # fmt: skip
    generation = agree_on_generation(store, rank, world_size, time.monotonic() + timeout)
    return dist.PrefixStore(f"torchbearer/generation{generation}/", store), rank, world_size


def agree_on_generation(store: Any, rank: int, world_size: int, deadline: float) -> int:
    """The generation number that every rank of this group returns, and no earlier group used.

    Args:
        store: The store shared with the other ranks (and with earlier groups of the job).
        rank: This rank.
        world_size: The number of ranks in this group.
        deadline: ``time.monotonic()`` value after which to give up.

    Raises:
        TorchbearerError: The deadline passed.
    """
    if rank == 0:
        generation = store.add(GENERATION_KEY, 1)
        while store.add(_joined(generation), 0) < world_size - 1:
            _wait(deadline, "the other ranks to join")
        store.set(_admitted(generation), b"1")
        return generation
    while True:
        generation = store.add(GENERATION_KEY, 0)
        if store.add(_joined(generation), 1) < world_size:  # else a dead group's generation, full already
            while store.add(GENERATION_KEY, 0) == generation:
                if store.check([_admitted(generation)]):
                    return generation
                _wait(deadline, "rank zero to admit this rank")
        while store.add(GENERATION_KEY, 0) == generation:  # wait for rank zero to open the new generation
            _wait(deadline, "rank zero to start a new group")


def _joined(generation: int) -> str:
    return f"torchbearer/generation{generation}/joined"


def _admitted(generation: int) -> str:
    return f"torchbearer/generation{generation}/admitted"


def _wait(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TorchbearerError(
            f"timed out waiting for {what} while starting the process group on torchrun's store. Check that every "
            "rank of the job started, or raise with_distributed(timeout=...)"
        )
    time.sleep(_POLL_SECONDS)
