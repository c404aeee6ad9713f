"""The warm-eval protocol on tiny traces whose numbers are worked out by hand."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Sequence

import pytest

from stream_warmer.errors import ConfigError
from stream_warmer.evaluation.delay import delay_requests
from stream_warmer.evaluation.warmeval import (
    EvalRow,
    StrategySpec,
    TraceStats,
    capacity_for,
    evaluate,
    evaluate_events,
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


def run(events: list[AccessEvent], strategy: WarmingStrategy, frac: float, k: int = 1,
        delay: int | None = None) -> EvalRow:
    spec = [StrategySpec("s", lambda: strategy)]
    if delay is None:  # the call as it was before delays existed
        [row] = evaluate("tiny", lambda: events, spec, [k], [frac])
    else:
        [row] = evaluate("tiny", lambda: events, spec, [k], [frac], delays=[delay])
    return row


def at(events: list[AccessEvent], after: dict[str, list[str]], frac: float, delay: int) -> EvalRow:
    """The row of a fresh ``Scripted(after)`` at one delay."""
    return run(events, Scripted(after), frac, delay=delay)


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


# --- the delay-aware variant (DESIGN §8): a warm named after request i lands after i+L


def test_a_next_key_warm_one_request_late_lands_on_a_key_already_missed() -> None:
    # C = 2, a b c d twice, each key warms the next. L = 0: all counted requests hit.
    # L = 1: the warm of b (named after a) lands after b was served: b missed and was
    # inserted, so the warm is not effective and b does not count as a hit.
    events, nxt = trace("a b c d a b c d"), {"a": ["b"], "b": ["c"], "c": ["d"], "d": ["a"]}
    assert at(events, nxt, 0.5, 0) == run(events, Scripted(nxt), 0.5)  # L=0 is §5
    late = at(events, nxt, 0.5, 1)
    assert (late.hit_ratio, late.warms_per_request, late.delay) == (0.0, 0.0, 1)
    assert math.isnan(late.warm_precision)


def test_two_ahead_warms_survive_one_request_of_delay_not_two() -> None:
    # C = 3 of 4 distinct; after each key warm the one two ahead (a -> c, b -> d, ...).
    # L = 1: the warm of request i lands after i+1, before i+2 asks for it:
    # a [a]; b [a b] +c [a b c]; c hit, +d [b c d]; d hit, +a [c d a] | a hit, +b
    # [d a b]; b hit, +c; c hit, +d; d hit, +a (never asked for; +b pending at the end).
    # Counted: 4 hits of 4; warms b c d a applied in the counted half, b c d useful.
    # L = 2: each warm lands after its key was requested (a miss): no hits, no warms.
    events = trace("a b c d a b c d")
    two = {"a": ["c"], "b": ["d"], "c": ["a"], "d": ["b"]}
    assert at(events, two, 0.75, 0).hit_ratio == 1.0
    one = at(events, two, 0.75, 1)
    assert (one.capacity, one.hit_ratio, one.warms_per_request) == (3, 1.0, 1.0)
    assert one.warm_precision == pytest.approx(3 / 4)
    late = at(events, two, 0.75, 2)
    assert (late.hit_ratio, late.warms_per_request) == (0.0, 0.0)


def test_a_warm_hits_only_when_its_lead_exceeds_the_delay() -> None:
    # No evictions (C = 18 of 18). Counted half: a x b m y c n o z; a warms x (needed
    # 1 request later), b warms y (2 later), c warms z (3 later): a hit iff L < lead.
    events = trace(" ".join(f"f{i}" for i in range(9)) + " a x b m y c n o z")
    leads = {"a": ["x"], "b": ["y"], "c": ["z"]}
    got = {d: at(events, leads, 1.0, d) for d in (0, 1, 2, 3, 8)}
    assert {d: r.hit_ratio * 9 for d, r in got.items()} == pytest.approx(
        {0: 3, 1: 2, 2: 1, 3: 0, 8: 0})
    assert {d: r.warms_per_request * 9 for d, r in got.items()} == pytest.approx(
        {0: 3, 1: 2, 2: 1, 3: 0, 8: 0})  # effective warms: the timely ones only
    assert [got[d].warm_precision for d in (0, 1, 2)] == [1.0, 1.0, 1.0]


def test_warms_count_where_applied_and_pending_ones_never_land() -> None:
    # f a c x (C = 4, half = 2); a warms x, x warms y. L = 0: the warm x is applied in
    # the training half (not counted, yet x hits); the warm y after the last request is
    # applied and counted (1 warm, never hit). L = 1: x is applied after c, in the
    # counted half: counted and useful; y is still pending at the end: never applied.
    events, after = trace("f a c x"), {"a": ["x"], "x": ["y"]}
    now = at(events, after, 1.0, 0)
    assert (now.hit_ratio, now.warms_per_request, now.warm_precision) == (0.5, 0.5, 0.0)
    late = at(events, after, 1.0, 1)
    assert (late.hit_ratio, late.warms_per_request, late.warm_precision) == (0.5, 0.5, 1.0)
    assert at(events, after, 1.0, 2).hit_ratio == 0.0  # x lands after it was requested


def test_delay_counts_requests_of_every_tenant() -> None:
    # t:a warms t:b; u's request in between is one request of delay (half = 1).
    events = [AccessEvent("t", "a", 0), AccessEvent("u", "m", 1), AccessEvent("t", "b", 2)]
    after = {"a": ["b"]}
    assert [at(events, after, 1.0, d).hit_ratio for d in (0, 1, 2)] == [0.5, 0.5, 0.0]


def test_many_delays_come_from_one_replay_in_order_and_match_single_runs() -> None:
    rng = random.Random(5)
    events = [AccessEvent(rng.choice("tu"), str(rng.randrange(40)), i) for i in range(3000)]
    specs = [StrategySpec("markov1", Markov), StrategySpec("nextkey", NextKey)]
    plain = evaluate("rand", lambda: events, specs, [1, 2], [0.1, 0.3])
    rows = evaluate("rand", lambda: events, specs, [1, 2], [0.1, 0.3], delays=[0, 3, 1])
    assert [(r.strategy, r.k, r.cache_frac, r.delay) for r in rows] == [
        (s, k, f, d) for s in ("markov1", "nextkey") for k in (1, 2) for f in (0.1, 0.3)
        for d in (0, 3, 1)]
    assert [r for r in rows if r.delay == 0] == plain  # L = 0 is the §5 result
    for d in (1, 3):
        alone = evaluate("rand", lambda: events, specs, [1, 2], [0.1, 0.3], delays=[d])
        assert [r for r in rows if r.delay == d] == alone


def test_evaluate_events_is_the_same_replay_at_a_given_capacity() -> None:
    rng = random.Random(7)
    events = [AccessEvent("t", str(rng.randrange(50)), i) for i in range(2000)]
    spec = StrategySpec("markov1", Markov)
    [row] = evaluate("rand", lambda: events, [spec], [1], [0.2], delays=[2])
    same = evaluate_events(events, spec, 1, row.capacity, delay=2, trace="rand")
    assert (same.capacity, same.hit_ratio, same.warm_precision, same.delay) == (
        row.capacity, row.hit_ratio, row.warm_precision, 2)
    assert same.cache_frac == pytest.approx(row.capacity / 50)
    everything = evaluate_events(events, spec, 1, row.capacity, warmup=0)
    assert everything.requests == len(events)
    none = evaluate_events(events, StrategySpec("none", NoWarm, ks=(1,)), 4, row.capacity)
    assert none.k == 4 and none.warms_per_request == 0.0


def test_delay_requests_rounds_a_latency_up_to_whole_requests() -> None:
    assert delay_requests(10, 2000) == 20
    assert delay_requests(0.4, 2000) == 1
    assert delay_requests(0, 5000) == 0
    assert delay_requests(8.3, 30_000) == 249  # 249.00000000000003 in floats
    assert delay_requests(0.001, 1000) == 1  # any latency above 0 is at least one request
    assert delay_requests(1.5, 1000) == 2
    for bad in [(-1, 1000), (10, 0), (10, -5), (math.nan, 1000)]:
        with pytest.raises(ConfigError):
            delay_requests(*bad)
    with pytest.raises(ConfigError, match="delays"):
        evaluate("t", lambda: trace("a b"), [StrategySpec("none", NoWarm)], [1], [1.0],
                 delays=[-1])
