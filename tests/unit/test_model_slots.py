"""TenantSlots: bounded, LRU-evicting, zero state for every new owner."""

from __future__ import annotations

import torch

from stream_warmer.model.net import StateSlots
from stream_warmer.model.slots import TenantSlots


def _table(capacity: int) -> tuple[TenantSlots, list[str]]:
    evicted: list[str] = []
    return TenantSlots(StateSlots(1, capacity, 2, torch.device("cpu")), evicted.append), evicted


def test_slots_are_stable_and_bounded_and_the_least_recent_is_evicted() -> None:
    table, evicted = _table(3)
    assert table.ids(["a", "b", "c"]) == [0, 1, 2]
    assert table.ids(["a"]) == [0]  # a is now the most recent
    assert table.ids(["d"]) == [1]  # b was the least recent: d takes its slot
    assert evicted == ["b"] and "b" not in table and len(table) == 3


def test_a_new_owner_starts_from_zero_state_and_others_keep_theirs() -> None:
    table, _ = _table(2)
    table.ids(["a", "b"])
    table.states.h.fill_(7.0)
    table.release("a")
    assert table.ids(["c"]) == [0]  # a's freed slot, reset
    assert torch.equal(table.states.h[:, 0], torch.zeros(1, 2))
    assert torch.equal(table.states.h[:, 1], torch.full((1, 2), 7.0))


def test_release_then_clear() -> None:
    table, evicted = _table(2)
    table.ids(["a", "b"])
    table.release("a")
    table.release("zz")  # unknown: nothing happens
    assert len(table) == 1 and table.ids(["c"]) == [0] and evicted == []
    table.clear()
    assert len(table) == 0 and table.ids(["x", "y"]) == [0, 1]
