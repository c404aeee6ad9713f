"""The published peers as strategies: pg (probability graph) and mithril."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec
import pytest

from stream_warmer.evaluation.warmeval import StrategySpec, evaluate_events
from stream_warmer.events import AccessEvent
from stream_warmer.lru import LruSim
from stream_warmer.serve.app import ServeApp
from stream_warmer.settings import StrategySettings, load_settings
from stream_warmer.strategies import build_baseline
from stream_warmer.strategies.base import Prediction, Window
from stream_warmer.strategies.mithril import Mithril
from stream_warmer.strategies.peers import PeerStrategy, ProbabilityGraph
from tests.unit.serve_fakes import (
    FakeClients,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeRedis,
    event_value,
    message,
)


def ev(key: str, tenant: str = "t") -> AccessEvent:
    return AccessEvent(tenant, key, 0)


def feed(strategy: PeerStrategy, seq: str, tenant: str = "t") -> None:
    for key in seq.split():
        strategy.observe(ev(key, tenant))


def after(strategy: PeerStrategy, key: str, k: int, tenant: str = "t") -> list[Prediction]:
    return strategy.predict([Window(tenant, (ev(key, tenant),))], k)[0]


def keys(preds: list[Prediction]) -> list[str]:
    return [p.key for p in preds]


def feed_at(strategy: PeerStrategy, at: dict[int, str], length: int) -> None:
    """Requests at these timestamps (the tenant's request numbers), unique fillers between."""
    for i in range(length):
        strategy.observe(ev(at.get(i, f"filler{i}")))


# -- pg ----------------------------------------------------------------------------


def test_pg_counts_successors_within_the_window_and_ranks_them() -> None:
    pg = ProbabilityGraph(lookahead=2, threshold=0.0)
    # arcs (window 2): a->b, a->c, b->c, b->a, c->a, c->b, a->b, a->d, b->d, b->x, d->x, ...
    feed(pg, "a b c a b d x y")
    # out of a: b 2, c 1, d 1 (4 arcs); score = lookahead x count / 4, capped at 1
    assert after(pg, "a", 3) == [Prediction("b", 1.0), Prediction("c", 0.5), Prediction("d", 0.5)]
    assert keys(after(pg, "a", 2)) == ["b", "c"]  # c and d tie: first seen first
    assert after(pg, "q", 3) == []


def test_pg_threshold_is_strict_on_count_over_all_arcs_out() -> None:
    pg = ProbabilityGraph(lookahead=2, threshold=0.25)  # p(a->b) = 2/4, p(a->c) = 1/4
    feed(pg, "a b c a b d x y")
    assert keys(after(pg, "a", 3)) == ["b"]


def test_pg_window_counts_duplicates_and_no_self_arcs() -> None:
    pg = ProbabilityGraph(lookahead=3, threshold=0.39)
    feed(pg, "a a b x y z w")
    # out of a: b 2 and x 2 (both a's were in the window), y 1, and no a->a: 5 arcs, so
    # p(b) = p(x) = 0.4 (0.33 if a->a counted, or if each a counted once)
    assert keys(after(pg, "a", 5)) == ["b", "x"]


def test_pg_without_capacity_skips_the_tenants_recent_keys() -> None:
    pg = ProbabilityGraph(lookahead=2, threshold=0.0)
    feed(pg, "a b a")  # b follows a, and b is in the window: almost surely cached
    assert after(pg, "a", 1) == []
    feed(pg, "x y")  # b has left the window
    assert keys(after(pg, "a", 1)) == ["b"]


def test_pg_shadow_names_the_first_k_uncached_candidates() -> None:
    pg = ProbabilityGraph(lookahead=1, threshold=0.0)
    pg.set_cache_capacity(2)
    # arcs a->b, b->a, a->c, c->d, d->a; the shadow LRU (C=2) holds [d, a] at the end
    out = list(pg.predict_stream([ev(k) for k in ["a", "b", "a", "c", "d", "a"]], 1))
    assert [keys(p) for p in out] == [[], [], [], [], [], ["b"]]  # at the 3rd, b was cached
    pg2 = ProbabilityGraph(lookahead=1, threshold=0.0)
    pg2.set_cache_capacity(2)
    out = list(pg2.predict_stream([ev(k) for k in ["a", "b", "a", "c", "d", "a"]], 2))
    assert keys(out[-1]) == ["b", "c"]


def phrases(n: int, seed: int) -> list[AccessEvent]:
    """Two tenants, each repeating a few fixed phrases of keys in random order."""
    rng = random.Random(seed)
    book = {t: [[f"{t}{p}.{i}" for i in range(5)] for p in range(6)] for t in "xy"}
    events: list[AccessEvent] = []
    while len(events) < n:
        tenant = rng.choice("xy")
        events += [ev(key, tenant) for key in rng.choice(book[tenant])]
    return events


@pytest.mark.parametrize("make", [lambda: ProbabilityGraph(lookahead=4),
                                  lambda: Mithril(lookahead=4, mining_threshold=8)])
def test_shadow_is_the_evaluators_cache_at_delay_0(make: Callable[[], PeerStrategy]) -> None:
    events = phrases(3000, 7)
    strategy, sim = make(), LruSim(12)
    strategy.set_cache_capacity(12)
    named = 0
    for event, preds in zip(events, strategy.predict_stream(events, 2), strict=True):
        sim.request((event.tenant, event.key), True)
        for p in preds:  # every key it names is an effective warm
            assert sim.warm((event.tenant, p.key), True)
            named += 1
    assert named > 100
    assert strategy.held()["shadow"] == 12


def test_pg_bounds_keys_and_successors() -> None:
    pg = ProbabilityGraph(lookahead=2, threshold=0.0, max_keys=1)
    feed(pg, "a b c x y")  # keys with arcs out: a, then b (a dropped), then c, x: one held
    assert pg.held()["keys"] == 1
    small = ProbabilityGraph(lookahead=1, threshold=0.0, max_successors=1)
    feed(small, "a b a c x")  # a->b, then a->c replaces it
    assert keys(after(small, "a", 3)) == ["c"]
    two = ProbabilityGraph(lookahead=1, threshold=0.0, max_successors=2)
    feed(two, "a b a c a d x")  # full at b, c: d drops the lower half, the oldest of equals
    assert keys(after(two, "a", 3)) == ["c", "d"]
    counted = ProbabilityGraph(lookahead=1, threshold=0.0, max_successors=2)
    feed(counted, "a b a b a c a d x")  # b twice: c goes for d
    assert keys(after(counted, "a", 3)) == ["b", "d"]
    rng = random.Random(3)
    big = ProbabilityGraph(lookahead=5, max_keys=30, max_successors=4)
    for _ in range(5000):
        big.observe(ev(str(rng.randrange(200)), rng.choice("xyz")))
    held = big.held()
    assert held["tenants"] == 3
    assert held["keys"] <= 3 * 30
    assert held["arcs"] <= 4 * held["keys"]


def test_pg_forget_drops_tenant_state() -> None:
    pg = ProbabilityGraph(lookahead=1, threshold=0.0)
    feed(pg, "a b x", tenant="one")
    feed(pg, "a c x", tenant="two")
    pg.forget(["one"])
    assert after(pg, "a", 2, tenant="one") == []
    assert keys(after(pg, "a", 2, tenant="two")) == ["c"]
    assert pg.held()["tenants"] == 1
    feed(pg, "a", tenant="one")  # starts over: no window, no arcs
    assert after(pg, "a", 2, tenant="one") == []


# -- mithril -----------------------------------------------------------------------


def test_mithril_associates_keys_requested_close_together() -> None:
    m = Mithril(lookahead=2, min_support=2, max_support=3, mining_threshold=2)
    # a at 0 and 5, b at 1 and 6: same count, pairs 1 apart; b came after a both times
    feed_at(m, {0: "a", 1: "b", 5: "a", 6: "b"}, 10)
    assert after(m, "a", 2) == [Prediction("b", 1.0)]
    assert after(m, "b", 2) == []
    assert m.held()["mining"] == 0  # mined and cleared


def test_mithril_needs_close_pairs_and_equal_support() -> None:
    far = Mithril(lookahead=2, min_support=2, max_support=3, mining_threshold=2)
    feed_at(far, {0: "a", 1: "b", 5: "a", 9: "b"}, 12)  # second pair 4 apart
    assert after(far, "a", 2) == []
    uneven = Mithril(lookahead=2, min_support=2, max_support=3, mining_threshold=2)
    feed_at(uneven, {0: "a", 1: "b", 2: "a", 3: "a", 4: "b"}, 8)  # a 3 times, b twice
    assert after(uneven, "a", 2) == []


def test_mithril_confidence_is_the_share_of_close_pairs() -> None:
    at = {0: "a", 1: "b", 5: "a", 6: "b", 20: "a", 40: "b"}  # 2 of 3 pairs close
    strict = Mithril(lookahead=2, min_support=3, max_support=3, mining_threshold=2)
    feed_at(strict, at, 45)
    assert after(strict, "a", 1) == []
    loose = Mithril(lookahead=2, min_support=3, max_support=3, confidence=0.6,
                    mining_threshold=2)
    feed_at(loose, at, 45)
    assert after(loose, "a", 1) == [Prediction("b", pytest.approx(2 / 3))]


def test_mithril_drops_keys_past_max_support() -> None:
    m = Mithril(lookahead=2, min_support=2, max_support=2, mining_threshold=2)
    # a: 0, 2 (mining), 3 (a third: frequent, dropped); b: 1, 4 reaches mining alone
    feed_at(m, {0: "a", 1: "b", 2: "a", 3: "a", 4: "b"}, 8)
    assert after(m, "a", 2) == []
    kept = Mithril(lookahead=2, min_support=2, max_support=3, mining_threshold=2)
    feed_at(kept, {0: "a", 1: "b", 2: "a", 4: "b"}, 8)  # the same without a's third
    assert keys(after(kept, "a", 2)) == ["b"]


def test_mithril_nearest_association_first_oldest_round_dropped() -> None:
    m = Mithril(lookahead=3, min_support=2, max_support=2, mining_threshold=2,
                max_associations=2)
    # three minings: a->b 1 apart, then a->c 3 apart, then a->d 2 apart
    feed_at(m, {0: "a", 1: "b", 10: "a", 11: "b", 20: "a", 23: "c", 30: "a", 33: "c",
                40: "a", 42: "d", 50: "a", 52: "d"}, 60)
    # at most 2: b goes (the oldest round, though nearest); then nearest first
    assert keys(after(m, "a", 3)) == ["d", "c"]
    same = Mithril(lookahead=3, min_support=2, max_support=2, mining_threshold=4,
                   max_associations=2)
    feed_at(same, {0: "a", 1: "b", 2: "c", 3: "d", 10: "a", 11: "b", 12: "c", 13: "d"}, 20)
    # one mining: a->b, a->c, a->d (1, 2, 3 apart); in one round the farthest goes
    assert keys(after(same, "a", 3)) == ["b", "c"]
    rng = random.Random(5)
    big = Mithril(lookahead=5, mining_threshold=16, max_keys=25, max_associations=3)
    for _ in range(6000):
        big.observe(ev(str(rng.randrange(300)), rng.choice("xyz")))
    held = big.held()
    assert held["recording"] <= 3 * 25
    assert held["mining"] < 3 * 16
    assert held["associated"] <= 3 * 25
    assert held["associations"] <= 3 * held["associated"]


def test_mithril_forget_drops_tenant_state() -> None:
    m = Mithril(lookahead=2, min_support=2, max_support=3, mining_threshold=2)
    feed_at(m, {0: "a", 1: "b", 5: "a", 6: "b"}, 10)
    m.forget(["t"])
    assert after(m, "a", 2) == []
    assert m.held() == {"tenants": 0, "recording": 0, "mining": 0, "associated": 0,
                        "associations": 0, "shadow": 0}


# -- both ---------------------------------------------------------------------------


def test_built_by_name_from_settings() -> None:
    settings = StrategySettings(name="pg", fallback="mithril", pg_lookahead=1,
                                pg_threshold=0.0, mithril_lookahead=2,
                                mithril_mining_threshold=2)
    pg = build_baseline("pg", settings)
    assert isinstance(pg, ProbabilityGraph)
    feed(pg, "a b a c x")
    assert keys(pg.predict([Window("t", (ev("a"),))], 4)[0]) == ["b", "c"]
    m = build_baseline("mithril", settings)
    assert isinstance(m, Mithril)
    feed_at(m, {0: "a", 1: "b", 5: "a", 6: "b"}, 10)
    assert keys(m.predict([Window("t", (ev("a"),))], 4)[0]) == ["b"]
    with pytest.raises(ValueError, match="min_support"):
        Mithril(min_support=3, max_support=2)
    with pytest.raises(ValueError, match="lookahead"):
        ProbabilityGraph(lookahead=0)


@pytest.mark.parametrize("name", ["pg", "mithril"])
def test_the_evaluator_runs_them(name: str) -> None:
    events = phrases(4000, 11)
    settings = StrategySettings(mithril_mining_threshold=16)
    none = evaluate_events(events, StrategySpec("none", lambda: build_baseline("none", settings)),
                           1, 12)
    row = evaluate_events(events, StrategySpec(name, lambda: build_baseline(name, settings)),
                          1, 12)
    assert row.hit_ratio > none.hit_ratio + 0.3
    assert row.warm_precision > 0.5


@pytest.mark.parametrize("name", ["pg", "mithril"])
def test_serve_runs_them(name: str) -> None:
    now = 1_800_000_000_000
    messages = [message(0, i, event_value("acme", str(i % 30), now)) for i in range(90)]
    env = {"METRICS__ENABLED": "false", "TOPICS__ACCESS_EVENTS": "events",
           "TOPICS__WARM_COMMANDS": "warm", "STRATEGY__NAME": name}
    settings = load_settings(None, {f"STREAM_WARMER_{k}": v for k, v in env.items()})
    log: list[str] = []
    producer = FakeProducer(log)
    app = ServeApp(settings, build_baseline(settings.strategy.name, settings.strategy),
                   clients=FakeClients(FakeConsumer(log, messages), producer, FakeRedis(log)),
                   clock=FakeClock(), wall_ms=lambda: now)
    stats = app.run(max_messages=90)
    assert stats.consumed == 90
    commands = [msgspec.json.decode(v) for _t, v, _k in producer.on("warm")]
    assert all(c["strategy"] == name for c in commands)
    if name == "pg":  # once, after the newest key 29: its top successor not in the window
        assert [c["key"] for c in commands] == ["0"]


@pytest.mark.parametrize(("capacity", "shadow"), [(0, False), (50, True)])
def test_serve_tells_the_peers_the_cache_capacity(capacity: int, shadow: bool) -> None:
    """serve's strategy, as the evaluator's, shadows a cache of ``model.cache_capacity``
    (0: unknown, the peer skips the tenant's recent keys instead)."""
    from stream_warmer.cli.serve import _baseline
    from stream_warmer.settings import ModelSettings, Settings, StrategySettings

    settings = Settings(strategy=StrategySettings(name="pg"),
                        model=ModelSettings(cache_capacity=capacity))
    strategy = _baseline(settings)
    assert isinstance(strategy, ProbabilityGraph)
    list(strategy.predict_stream(phrases(400, 7), 1))
    assert (strategy.held()["shadow"] > 0) is shadow
