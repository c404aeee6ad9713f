"""Iso-warm rows: one online threshold holds every strategy's cache at W warms/request."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Iterator, Sequence

from stream_warmer.evaluation.compare import format_table
from stream_warmer.evaluation.warmeval import StrategySpec, evaluate
from stream_warmer.events import AccessEvent
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.presence import Presence


class RandomWarms(WarmingStrategy):
    """Names ``per_request`` random keys of a large space, with random scores."""

    name = "random"
    nested_k = True

    def __init__(self, per_request: int, seed: int = 0) -> None:
        self._n = per_request
        self._rng = random.Random(seed)

    def observe(self, event: AccessEvent) -> None:
        """Stateless."""

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """Not used by the evaluator."""
        return [[] for _ in windows]

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """``per_request`` (at most k) uncached-looking keys, scores uniform in [0, 1]."""
        for _ in events:
            yield [Prediction(str(self._rng.randrange(10**9)), self._rng.random())
                   for _ in range(min(k, self._n))]


def _events(n: int) -> list[AccessEvent]:
    rng = random.Random(1)
    return [AccessEvent(tenant="t", key=str(rng.randrange(500)), ts=i) for i in range(n)]


def test_each_strategy_is_held_at_the_rate_or_below_it() -> None:
    events = _events(40_000)
    specs = [StrategySpec("many", lambda: RandomWarms(2)),
             StrategySpec("none", lambda: RandomWarms(0))]
    rows = evaluate("t", lambda: events, specs, [2], [0.1], warm_rates=[0.3])
    own = {r.strategy: r for r in rows if r.warm_rate is None}
    held = {r.strategy: r for r in rows if r.warm_rate == 0.3}
    assert own["many"].warms_per_request > 1.5  # two random keys: nearly always effective
    assert abs(held["many"].warms_per_request - 0.3) < 0.02  # the gate holds it at W
    assert held["none"].warms_per_request == 0.0  # it only lowers a strategy's rate
    table = format_table(rows)
    assert "W" in table.splitlines()[0]
    starred = [line for line in table.splitlines() if "*" in line]
    assert len(starred) == 1 and "W=0.3" in starred[0]


def test_without_rates_the_rows_are_the_protocols_own() -> None:
    events = _events(2_000)
    spec = StrategySpec("many", lambda: RandomWarms(1))
    plain = evaluate("t", lambda: events, [spec], [1], [0.1])
    with_rates = evaluate("t", lambda: events, [spec], [1], [0.1], warm_rates=[0.5])
    assert [r.warm_rate for r in with_rates] == [None, 0.5]
    assert with_rates[0] == plain[0]


class Floored(RandomWarms):
    """``RandomWarms`` with a confidence floor of its own it can give up."""

    def __init__(self, per_request: int, floor: float) -> None:
        super().__init__(per_request)
        self.floor = floor

    def release_floor(self) -> float | None:
        floor, self.floor = self.floor, 0.0
        return floor

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """Its random warms, best first, at or above its floor."""
        for preds in super().predict_stream(events, k):
            yield sorted((p for p in preds if p.score >= self.floor),
                         key=lambda p: -p.score)


def test_a_strategy_that_gives_up_its_floor_is_held_above_its_own_rate() -> None:
    """Its own row is what it does at its floor; held at W above that rate it spends W
    (a strategy without a floor to give up stays at its own rate, test above)."""
    events = _events(40_000)
    plain = evaluate("t", lambda: events, [StrategySpec("f", lambda: Floored(2, 0.8))],
                     [2], [0.1])
    rows = evaluate("t", lambda: events, [StrategySpec("f", lambda: Floored(2, 0.8))],
                    [2], [0.1], warm_rates=[0.2, 1.0])
    own, low, high = rows
    assert own == plain[0]  # the same warms: the evaluator applies the floor it took
    assert own.warms_per_request < 0.5  # about 2 x 0.2 of the random scores pass 0.8
    assert abs(low.warms_per_request - 0.2) < 0.02  # held below its own rate
    assert abs(high.warms_per_request - 1.0) < 0.03  # and above it


def test_fixed_thresholds_trace_the_frontier_below_and_above_the_floor() -> None:
    """A fixed threshold T takes the named warms scoring at least T, all replay long: with
    uniform scores, k = 2 random keys spend about 2 x (1 - T) per request, on either side
    of the strategy's own floor (given up, as for the gate); the own row is unchanged."""
    events = _events(20_000)
    plain = evaluate("t", lambda: events, [StrategySpec("f", lambda: Floored(2, 0.8))],
                     [2], [0.1])
    rows = evaluate("t", lambda: events, [StrategySpec("f", lambda: Floored(2, 0.8))],
                    [2], [0.1], warm_rates=[0.2], thresholds=[0.9, 0.5, 0.0])
    assert [r.held() for r in rows] == ["-", "W=0.2", "T=0", "T=0.5", "T=0.9"]
    assert rows[0] == plain[0]
    for row in rows[2:]:
        assert row.threshold is not None and row.warm_rate is None
        assert abs(row.warms_per_request - 2 * (1 - row.threshold)) < 0.05
    table = format_table(rows).splitlines()
    assert "W / T" in table[0] and "T=0.5" in table[5]
    assert sum("*" in line for line in table) == 0  # one strategy: nothing to star


class Picky(Floored):
    """Picks, of ``n`` random candidates at or above its floor, the first k a presence
    shadow of the cache does not hold (as the lstm's presence filter does), so what it
    names depends on what it named: its frontier picks from a twin's candidates."""

    def __init__(self, floor: float, *, pick: bool = True) -> None:
        super().__init__(4, floor)
        self.pick = pick
        self.presence: Presence | None = None
        self._rng = random.Random(0)

    def set_cache_capacity(self, capacity: int) -> None:
        self.presence = Presence(capacity) if self.pick else None

    def picking(self) -> tuple[Picky, int]:
        return Picky(0.0, pick=False), 4

    def release_floor(self) -> float | None:
        return None

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """Four candidates from a small key space, best first; picked when ``pick``."""
        for event in events:
            cands = sorted(((str(self._rng.randrange(3000)), self._rng.random())
                            for _ in range(4)), key=lambda c: -c[1])
            if self.presence is None:
                yield [Prediction(key, score) for key, score in cands[:k]]
                continue
            self.presence.request(event.tenant, event.key)
            yield self.presence.pick(event.tenant, ((key, score) for key, score in cands
                                                    if score >= self.floor), k)


def test_a_strategy_that_picks_with_a_shadow_gets_frontier_caches_that_pick() -> None:
    """Its T row is what an instance at floor T does on its own (one twin's candidates,
    picked per cache by a shadow of its own), not a cut after the fact of the floor-0.8
    instance's picks."""
    events = _events(8_000)
    rows = evaluate("t", lambda: events, [StrategySpec("s", lambda: Picky(0.8))],
                    [2], [0.1], thresholds=[0.3, 0.8])
    alone = {t: evaluate("t", lambda: events, [StrategySpec("s", functools.partial(Picky, t))],
                         [2], [0.1])[0] for t in (0.3, 0.8)}
    own, at3, at8 = rows
    assert (at3.threshold, at8.threshold) == (0.3, 0.8) and at3.k == at8.k == 2
    for at, t in ((at3, 0.3), (at8, 0.8)):
        assert (at.hit_ratio, at.warms_per_request) == (alone[t].hit_ratio,
                                                         alone[t].warms_per_request)
    assert at8.warms_per_request == own.warms_per_request
    assert at3.warms_per_request > own.warms_per_request  # not a cut of the own warms
