"""The baseline strategies: none, popularity, markov, nextkey."""

from __future__ import annotations

import itertools
import random

import pytest

from stream_warmer.events import AccessEvent
from stream_warmer.settings import StrategySettings
from stream_warmer.strategies import BASELINES, build_baseline
from stream_warmer.strategies.base import Prediction, Window
from stream_warmer.strategies.baselines import Markov, NextKey, NoWarm, Popularity


def ev(key: str, tenant: str = "t") -> AccessEvent:
    return AccessEvent(tenant, key, 0)


def keys(preds: list[Prediction]) -> list[str]:
    return [p.key for p in preds]


def feed(strategy: Markov | Popularity, seq: str, tenant: str = "t") -> None:
    for key in seq.split():
        strategy.observe(ev(key, tenant))


def test_nowarm_predicts_nothing() -> None:
    s = NoWarm()
    assert s.predict([Window("t", (ev("1"),))], 4) == [[]]
    assert list(s.predict_stream([ev("1"), ev("2")], 4)) == [[], []]


def test_markov_ranks_by_count_then_first_seen() -> None:
    m = Markov()
    feed(m, "a c a b a b a d")  # after a: c once, b twice, d once
    [preds] = m.predict([Window("t", (ev("a"),))], 3)
    assert keys(preds) == ["b", "c", "d"]
    assert [p.score for p in preds] == pytest.approx([0.5, 0.25, 0.25])


def test_markov_ties_keep_first_seen_order() -> None:
    m = Markov()
    feed(m, "a z a y a x")
    assert keys(m.predict([Window("t", (ev("a"),))], 1)[0]) == ["z"]
    assert keys(m.predict([Window("t", (ev("a"),))], 3)[0]) == ["z", "y", "x"]


def test_markov_unknown_key_and_tenant_isolation() -> None:
    m = Markov()
    feed(m, "a b", tenant="one")
    feed(m, "a c", tenant="two")
    assert m.predict([Window("one", (ev("a", "one"),))], 2) == [[Prediction("b", 1.0)]]
    assert keys(m.predict([Window("two", (ev("a", "two"),))], 2)[0]) == ["c"]
    assert m.predict([Window("one", (ev("q", "one"),))], 2) == [[]]
    m.forget(["one"])
    assert m.predict([Window("one", (ev("a", "one"),))], 2) == [[]]
    assert keys(m.predict([Window("two", (ev("a", "two"),))], 2)[0]) == ["c"]


def test_markov_evicts_least_recently_used_keys() -> None:
    m = Markov(max_keys=2)
    feed(m, "a x b x c")  # tables: a, x (x->b, then x->c), b; a is the oldest
    assert m.predict([Window("t", (ev("a"),))], 1) == [[]]
    assert keys(m.predict([Window("t", (ev("x"),))], 2)[0]) == ["b", "c"]
    assert keys(m.predict([Window("t", (ev("b"),))], 1)[0]) == ["x"]


def test_markov_bounds_successors_dropping_the_lowest_ranked() -> None:
    m = Markov(max_successors=2)
    feed(m, "a b a b a c a d")  # b:2, c:1, then d replaces c (lowest ranked)
    [preds] = m.predict([Window("t", (ev("a"),))], 4)
    assert keys(preds) == ["b", "d"]
    assert preds[0].score == pytest.approx(2 / 4)  # total counts every transition seen


def test_markov_incremental_ranking_matches_a_full_sort() -> None:
    rng = random.Random(7)
    seq = [str(rng.choice("abcdefgh")) for _ in range(3000)]
    m = Markov(max_keys=100, max_successors=100)
    counts: dict[str, dict[str, int]] = {}
    for prev, key in itertools.pairwise(seq):
        counts.setdefault(prev, {})
        counts[prev][key] = counts[prev].get(key, 0) + 1
    stream = list(m.predict_stream([ev(k) for k in seq], 8))
    final = {k: sorted(c, key=c.__getitem__, reverse=True) for k, c in counts.items()}
    assert keys(stream[-1]) == final[seq[-1]]
    for key, ranked in final.items():
        assert keys(m.predict([Window("t", (ev(key),))], 8)[0]) == ranked


def test_markov_predict_stream_equals_observe_then_predict() -> None:
    seq = ["1", "2", "3", "1", "2", "4", "1", "2", "3", "5", "1"]
    a, b = Markov(), Markov()
    stream = list(a.predict_stream([ev(k) for k in seq], 2))
    for key, got in zip(seq, stream, strict=True):
        b.observe(ev(key))
        assert b.predict([Window("t", (ev(key),))], 2)[0] == got


@pytest.mark.parametrize(
    ("key", "k", "expected"),
    [
        ("41", 2, ["42", "43"]),
        ("0", 1, ["1"]),
        ("007", 2, ["008", "009"]),
        ("-3", 2, ["-2", "-1"]),
        ("user:42", 2, []),
        ("1_000", 1, []),
        ("١٢", 1, []),  # non-ASCII digits are not integer keys
    ],
)
def test_nextkey(key: str, k: int, expected: list[str]) -> None:
    [preds] = NextKey().predict([Window("t", (ev(key),))], k)
    assert keys(preds) == expected
    assert [p.score for p in preds] == pytest.approx([1 / i for i in range(1, len(expected) + 1)])


def test_popularity_top_keys_minus_current() -> None:
    p = Popularity(max_keys=8, halflife_events=1000)
    feed(p, "a a a b b c")
    assert keys(p.predict([Window("t", (ev("a"),))], 2)[0]) == ["b", "c"]
    assert keys(p.predict([Window("t", (ev("z"),))], 2)[0]) == ["a", "b"]
    assert p.predict([Window("other", (ev("a", "other"),))], 2) == [[]]


def test_popularity_is_bounded_and_decays() -> None:
    p = Popularity(max_keys=2, halflife_events=4)
    feed(p, "a a b c")  # c replaces b (least counted) and inherits its count; then halved
    [preds] = p.predict([Window("t", (ev("z"),))], 5)
    assert keys(preds) == ["a", "c"]
    assert [x.score for x in preds] == pytest.approx([1 / 2, 1 / 2])


def test_build_baseline_names_and_bounds() -> None:
    settings = StrategySettings(markov_max_keys_per_tenant=1, markov_max_successors=1)
    for name in BASELINES:
        assert build_baseline(name, settings).name == name
    unbounded = build_baseline("markov1", settings)
    for key in ["a", "b", "a", "c"]:
        unbounded.observe(ev(key))
    assert keys(unbounded.predict([Window("t", (ev("a"),))], 4)[0]) == ["b", "c"]
    m = build_baseline("markov", settings)
    for key in ["a", "b", "a", "c"]:
        m.observe(ev(key))
    # a->b, b->a (a's table evicted), a->c (b's evicted): one key table, one successor
    assert keys(m.predict([Window("t", (ev("a"),))], 4)[0]) == ["c"]
    assert keys(m.predict([Window("t", (ev("b"),))], 4)[0]) == []
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("lstm", settings)


def test_the_table_budget_is_validated_and_reaches_markov() -> None:
    with pytest.raises(ValueError, match="table_bytes=0"):
        Markov(table_bytes=0)
    with pytest.raises(ValueError, match="markov_table_mb"):
        StrategySettings(markov_table_mb=0)
    settings = StrategySettings(markov_table_mb=0.5)
    assert settings.markov_table_bytes == 1 << 19
    m = build_baseline("markov", settings)
    assert isinstance(m, Markov) and m.table_stats().budget == 1 << 19
    unbounded = build_baseline("markov1", settings)
    assert isinstance(unbounded, Markov) and unbounded.table_stats().budget == 1 << 62
