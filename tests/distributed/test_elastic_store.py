"""``torchbearer.distributed.elastic``: the ranks of a restarted group agree on keys no dead group wrote.

The agent's store outlives the groups torchrun restarts; here a ``HashStore`` plays it, and threads play
the ranks, arriving in the orders that broke the restarted groups (a rank reading before rank zero).
"""

from __future__ import annotations

import threading
import time

import pytest
from torch import distributed as dist

from torchbearer.distributed import elastic, round_store
from torchbearer.errors import TorchbearerError


def _agree(store, world: int, delays: dict[int, float]) -> list[int]:
    """Each rank's generation, rank r starting after ``delays.get(r, 0)`` seconds."""
    generations = [0] * world

    def rank(number: int) -> None:
        time.sleep(delays.get(number, 0.0))
        generations[number] = elastic.agree_on_generation(store, number, world, time.monotonic() + 20)

    threads = [threading.Thread(target=rank, args=(number,)) for number in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return generations


def test_every_group_gets_a_generation_of_its_own_whoever_comes_first():
    store = dist.HashStore()
    first = _agree(store, 3, {})
    late_rank_zero = _agree(store, 3, {0: 0.3})  # the others read the first group's generation first
    late_others = _agree(store, 3, {1: 0.3, 2: 0.2})
    assert first == [1, 1, 1] and late_rank_zero == [2, 2, 2] and late_others == [3, 3, 3]


def test_a_rank_that_joins_a_generation_whose_group_died_half_formed_moves_to_the_new_one():
    store = dist.HashStore()
    store.add(elastic.GENERATION_KEY, 1)  # a group whose rank zero opened generation 1, then the job died
    assert _agree(store, 2, {0: 0.3}) == [2, 2]  # rank 1 first joins generation 1, which never admits it


def test_waiting_for_ranks_that_never_come_ends_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(elastic, "_POLL_SECONDS", 0.01)
    with pytest.raises(TorchbearerError, match="timed out waiting for the other ranks to join"):
        elastic.agree_on_generation(dist.HashStore(), 0, 2, time.monotonic() + 0.1)


def test_outside_torchrun_the_group_starts_as_usual(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    assert round_store(timeout=1) is None
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")
    assert round_store(timeout=1) is None
