"""The warm-eval protocol on tiny traces whose numbers are worked out by hand."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Sequence

import pytest

from stream_warmer.evaluation.warmeval import (
    EvalRow,
    StrategySpec,
    TraceStats,
    capacity_for,
    evaluate,
    scan,
)
from stream_warmer.events import AccessEvent
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.baselines import Markov, NextKey, NoWarm


class Scripted(WarmingStrategy):
    """Names, after each key, the keys of a fixed table (same for every occurrence)."""

    name = "scripted"

    def __init__(self, after: dict[str, list[str]]) -> None:
        self.after = after
        self.observed: list[str] = []

    def observe(self, event: AccessEvent) -> None:
        self.observed.append(event.key)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        return [[Prediction(x, 1.0) for x in self.after.get(w.events[-1].key, [])[:k]]
                for w in windows]


class NotNested(WarmingStrategy):
    """Markov without the nested-k promise: the evaluator must run one per k."""

    name = "notnested"

    def __init__(self) -> None:
        self.inner = Markov()

    def observe(self, event: AccessEvent) -> None:
        self.inner.observe(event)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        return self.inner.predict(windows, k)


def trace(keys: str, tenant: str = "t") -> list[AccessEvent]:
    return [AccessEvent(tenant, key, i) for i, key in enumerate(keys.split())]


def run(events: list[AccessEvent], strategy: WarmingStrategy, frac: float, k: int = 1) -> EvalRow:
    [row] = evaluate("tiny", lambda: events, [StrategySpec("s", lambda: strategy)], [k], [frac])
    return row


def test_capacity_rounds_down_like_the_reference() -> None:
    assert capacity_for(0.01, 15_319) == 153
    assert capacity_for(0.1, 15_319) == 1531
    assert capacity_for(0.1, 48_974) == 4897
    assert capacity_for(0.1, 186_880) == 18_688
    assert capacity_for(0.01, 50) == 1


def test_scan_counts_pairs_per_tenant() -> None:
    events = trace("1 2 1") + trace("1", tenant="u")
    assert scan(events) == TraceStats(requests=4, distinct=3)


def test_plain_lru_counts_only_the_second_half() -> None:
    # C = floor(2/3 * 3) = 2; half = 3, counted: b c a
    # a miss [a]; b miss [a b]; a hit [b a]; | b hit [a b]; c miss [b c]; a miss [c a]
    row = run(trace("a b a b c a"), NoWarm(), 2 / 3)
    assert (row.capacity, row.requests) == (2, 3)
    assert row.hit_ratio == pytest.approx(1 / 3)
    assert math.isnan(row.warm_precision)
    assert row.warms_per_request == 0


def test_precision_counts_counted_warms_hit_before_eviction() -> None:
    # C = 2, cycle a b c d twice, each key warms the next one.
    # Training half: every request hits a training warm (not counted).
    # Counted half: a hits (a training warm: a hit, but no useful warm); warms b, c, d
    # are hit (useful 3); the last warm (a, after d) is never requested: not useful.
    nxt = {"a": ["b"], "b": ["c"], "c": ["d"], "d": ["a"]}
    row = run(trace("a b c d a b c d"), Scripted(nxt), 0.5)
    assert row.capacity == 2
    assert row.hit_ratio == 1.0
    assert row.warm_precision == pytest.approx(3 / 4)
    assert row.warms_per_request == 1.0


def test_warm_of_a_cached_key_is_not_effective_and_not_refreshed() -> None:
    # C = 2: a miss [a]; b miss [a b], warm a: cached, left as LRU | c miss evicts a
    # [b c]; a miss. Were the warm a refresh, a would have been a hit.
    row = run(trace("a b c a"), Scripted({"b": ["a"]}), 2 / 3)
    assert row.hit_ratio == 0.0
    assert row.warms_per_request == 0.0
    assert math.isnan(row.warm_precision)


def test_warm_evicted_before_its_hit_is_not_useful() -> None:
    # C = floor(0.375 * 8) = 3; half = 4 (counted: x y z p)
    # a [a]; b [a b]; c [a b c]; d [b c d] | x [c d x] warm p [d x p]; y [x p y];
    # z [p y z]; p hit, precision 1/1. With one more miss in between (C = 3 of 10,
    # counted x y z q p) the warm p is evicted before its request.
    row = run(trace("a b c d x y z p"), Scripted({"x": ["p"]}), 0.375)
    assert (row.hit_ratio, row.warm_precision, row.warms_per_request) == (0.25, 1.0, 0.25)
    row = run(trace("a b c d e x y z q p"), Scripted({"x": ["p"]}), 0.3)
    assert row.hit_ratio == 0.0
    assert (row.warm_precision, row.warms_per_request) == (0.0, 0.2)


def test_warms_stay_within_the_tenant() -> None:
    events = [AccessEvent("t", "a", 0), AccessEvent("u", "b", 1),
              AccessEvent("t", "b", 2), AccessEvent("u", "b", 3)]
    # t warms its own b after a; u's b is another pair: 3 distinct pairs, C = 3
    row = run(events, Scripted({"a": ["b"]}), 1.0)
    assert row.hit_ratio == 1.0  # t/b (warmed) and u/b (requested before)


def test_rows_for_every_strategy_k_and_f_in_order() -> None:
    events = trace("1 2 3 1 2 3 4 5 1 2 3")
    specs = [StrategySpec("none", NoWarm, ks=(1,)), StrategySpec("nextkey", NextKey)]
    rows = evaluate("tiny", lambda: events, specs, [4, 1], [0.5, 1.0])
    assert [(r.strategy, r.k, r.cache_frac) for r in rows] == [
        ("none", 1, 0.5), ("none", 1, 1.0),
        ("nextkey", 1, 0.5), ("nextkey", 1, 1.0), ("nextkey", 4, 0.5), ("nextkey", 4, 1.0),
    ]
    assert all(r.requests == len(events) - len(events) // 2 for r in rows)


def test_nested_and_per_k_lanes_agree() -> None:
    rng = random.Random(3)
    events = [AccessEvent("t", str(rng.randrange(30)), i) for i in range(2000)]
    specs = [StrategySpec("markov1", Markov), StrategySpec("notnested", NotNested)]
    rows = evaluate("rand", lambda: events, specs, [1, 3], [0.1, 0.3])
    mine = [r for r in rows if r.strategy == "markov1"]
    other = [r for r in rows if r.strategy == "notnested"]
    assert len(mine) == len(other) == 4
    for a, b in zip(mine, other, strict=True):
        assert (a.k, a.hit_ratio, a.warm_precision) == (b.k, b.hit_ratio, b.warm_precision)
    assert mine[0].hit_ratio != mine[2].hit_ratio  # k matters on this trace


def test_the_strategy_sees_every_event_once_in_order() -> None:
    strategy = Scripted({})
    events = trace("a b c d e")
    run(events, strategy, 0.5)
    assert strategy.observed == ["a", "b", "c", "d", "e"]


def test_source_is_streamed_twice_without_stats() -> None:
    calls = []

    def source() -> Iterator[AccessEvent]:
        calls.append(1)
        return iter(trace("a b a b"))

    def events() -> Iterable[AccessEvent]:
        return source()

    [row] = evaluate("t", events, [StrategySpec("none", NoWarm)], [1], [1.0])
    assert len(calls) == 2
    assert row.hit_ratio == 1.0


class CapacityAware(Scripted):
    """Warms its table's keys only when told a cache of at least ``min_capacity``."""

    def __init__(self, after: dict[str, list[str]], min_capacity: int) -> None:
        super().__init__(after)
        self.min_capacity = min_capacity
        self.told: list[int] = []

    def set_cache_capacity(self, capacity: int) -> None:
        self.told.append(capacity)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        if not self.told or self.told[-1] < self.min_capacity:
            return [[] for _ in windows]
        return super().predict(windows, k)


def test_capacity_aware_strategies_get_one_instance_per_f_told_its_c() -> None:
    # 8 distinct: C = 1 at f=0.125, 4 at f=0.5
    events = trace("a b c d a b c d a b c d a b c d e f g h")
    made: list[CapacityAware] = []

    def make() -> WarmingStrategy:
        made.append(CapacityAware({"e": ["f"], "f": ["g"], "g": ["h"]}, 4))
        return made[-1]

    rows = evaluate("t", lambda: events, [StrategySpec("aware", make)], [1], [0.125, 0.5])
    assert [m.told for m in made] == [[1], [4]]
    assert [(r.cache_frac, r.capacity) for r in rows] == [(0.125, 1), (0.5, 4)]
    assert rows[0].warms_per_request == 0.0 and rows[1].warms_per_request > 0.0
    plain = [Scripted({})]
    evaluate("t", lambda: events, [StrategySpec("plain", lambda: plain[0])], [1], [0.125, 0.5])
    assert len(plain) == 1  # not capacity-aware: one instance serves every f


def test_a_shared_capacity_aware_instance_gets_one_lane_and_the_smallest_c() -> None:
    events = trace("a b c d a b c d e f g h")
    shared = CapacityAware({"a": ["b"]}, 1)
    rows = evaluate("t", lambda: events, [StrategySpec("aware", lambda: shared)], [1],
                    [0.125, 0.5])
    assert shared.told == [1]
    assert len(shared.observed) == len(events)  # fed once, not once per f
    assert [r.capacity for r in rows] == [1, 4]
