"""The one object-count LRU (stream_warmer.lru): requests, warms, delay, replay."""

from __future__ import annotations

from stream_warmer.lru import LruSim, replay


def test_requests_hit_warms_count_only_when_effective() -> None:
    sim = LruSim(2)
    assert sim.request(("t", "a"), True) is False  # miss: inserted
    assert sim.warm(("t", "b"), True) is True  # effective: inserted
    assert sim.warm(("t", "b"), True) is False  # already cached
    assert sim.request(("t", "b"), True) is True  # the warm was useful
    assert (sim.requests, sim.hits, sim.warms, sim.useful) == (2, 1, 1, 1)
    sim.request(("t", "c"), True)  # evicts the least recent: a
    assert list(sim.lru) == [("t", "b"), ("t", "c")]


def test_a_smaller_capacity_evicts_down_to_it_at_the_next_insert() -> None:
    sim = LruSim(4)
    for key in "abcd":
        sim.request(("t", key), False)
    sim.capacity = 2
    sim.request(("t", "e"), False)
    assert list(sim.lru) == [("t", "d"), ("t", "e")]


def test_a_delayed_warm_lands_after_l_more_requests() -> None:
    sim = LruSim(8, delay=2)
    sim.step(("t", "1"), [("t", "2")], True)  # named now, lands after request 3
    sim.step(("t", "2"), [], True)  # too early: a miss
    sim.step(("t", "3"), [], True)
    assert ("t", "2") in sim.lru and sim.hits == 0


def test_replay_counts_from_the_given_request() -> None:
    pairs = [("t", 1), ("t", 2), ("t", 1), ("t", 2), ("t", 3)]
    warms = [("t", 2), None, None, ("t", 3), None]
    # C=2: 1 miss, warm 2; 2 hit; 1 hit; 2 hit, warm 3 (evicts 1); 3 hit
    assert replay(pairs, warms, 2, 0) == (4 / 5, 2 / 5)
    assert replay(pairs, warms, 2, 3) == (2 / 2, 1 / 2)
