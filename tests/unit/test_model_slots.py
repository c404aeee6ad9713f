"""TenantSlots (native table): bounded, LRU-evicting, zero state for every new owner."""

from __future__ import annotations

import torch

from stream_warmer.model.slots import TenantSlots
from stream_warmer.model.state import StateSlots


def _table(capacity: int) -> tuple[TenantSlots, list[str]]:
    evicted: list[str] = []
    return TenantSlots(StateSlots(1, capacity, 2, torch.device("cpu")), evicted.append), evicted


def test_slots_are_stable_and_bounded_and_the_least_recent_is_evicted() -> None:
    table, evicted = _table(3)
    assert table.ids(["a", "b", "c"]).tolist() == [0, 1, 2]
    assert table.ids(["a"]).tolist() == [0]  # a is now the most recent
    assert table.ids(["d"]).tolist() == [1]  # b was the least recent: d takes its slot
    assert evicted == ["b"] and "b" not in table and len(table) == 3


def test_a_new_owner_starts_from_zero_state_and_others_keep_theirs() -> None:
    table, _ = _table(2)
    table.ids(["a", "b"])
    table.states.h.fill_(7.0)
    table.release("a")
    assert table.ids(["c"]).tolist() == [0]  # a's freed slot, reset
    assert torch.equal(table.states.h[:, 0], torch.zeros(1, 2))
    assert torch.equal(table.states.h[:, 1], torch.full((1, 2), 7.0))


def test_release_then_clear() -> None:
    table, evicted = _table(2)
    table.ids(["a", "b"])
    table.release("a")
    table.release("zz")  # unknown: nothing happens
    assert len(table) == 1 and table.ids(["c"]).tolist() == [0] and evicted == []
    table.clear()
    assert len(table) == 0 and table.ids(["x", "y"]).tolist() == [0, 1]


def test_evictions_follow_recency_over_many_batches() -> None:
    """The native table against an OrderedDict model of the same rules."""
    from collections import OrderedDict

    import numpy as np

    table, evicted = _table(5)
    model: OrderedDict[str, int] = OrderedDict()
    free: list[int] = []
    model_evicted: list[str] = []
    rng = np.random.default_rng(7)
    for _ in range(300):
        batch = list(dict.fromkeys(f"t{int(x)}" for x in rng.integers(0, 9, size=4)))
        if rng.random() < 0.2:
            gone = f"t{int(rng.integers(0, 9))}"
            table.release(gone)
            if gone in model:
                free.append(model.pop(gone))
        want = []
        for t in batch:
            if t in model:
                model.move_to_end(t)
            else:
                if free:
                    slot = free.pop()
                elif len(model) < 5:
                    slot = len(model)
                else:
                    old, slot = model.popitem(last=False)
                    model_evicted.append(old)
                model[t] = slot
            want.append(model[t])
        assert table.ids(batch).tolist() == want
    assert evicted == model_evicted and len(table) == len(model)
