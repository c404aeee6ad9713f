"""The native tracker and decode against the Python reference (tests/reference_tracker.py).

Random streams with small table bounds (so eviction and replacement happen all the
time), integer and string keys, keys at the int64 edge, sizes None/0/large, time going
backwards; every step's inputs and candidates must be identical, in every entry point
(``step``, ``step_batch``, ``encode``), and the pooled decode must pick the same keys
with the same scores. The lookahead parts (window table, AHEAD classes, horizon
targets: native/src/ahead.rs) are drawn too, and the targets checked against a
direct reading of their definition. So is the tables' memory budget, small enough that
the least recently used rows of all tenants keep going: the bytes charged, rows and
evictions must be the oracle's (which recomputes the bytes from its rows) at every step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_warmer.events import AccessEvent
from stream_warmer.model.decode import choose
from stream_warmer.model.features import FeatureSpec, parse_key
from stream_warmer.model.tracker import CandidateTracker
from stream_warmer.strategies.base import Window
from stream_warmer.strategies.baselines import Markov
from tests.reference_tracker import (
    ReferenceMarkov,
    ReferenceTracker,
    reference_choose,
    row_bytes,
)

KEYS = st.one_of(
    st.just("0"),  # a hub key: its successor table fills and gets replaced in
    st.integers(1, 7).map(str),  # a small key space: repeats, successor tables fill
    st.integers(0, 40).map(str),
    st.sampled_from(["a", "b", "007", "0", "²", "١٢", "999999999999999999",
                     "9223372036854775807", "1000000000000000000", ""]),
)
EVENTS = st.lists(
    st.builds(AccessEvent, tenant=st.sampled_from(["t1", "t2", "tenant-ü"]), key=KEYS,
              ts=st.integers(-5, 10_000), op=st.sampled_from(["get", "set", "del"]),
              size=st.one_of(st.none(), st.integers(0, 5000),
                             st.just(9_000_000_000_000_000_000))),
    min_size=1, max_size=200)
SPECS = st.builds(FeatureSpec, ranks=st.integers(1, 3),
                  deltas=st.lists(st.integers(-3, 9), max_size=4, unique=True).map(tuple),
                  size_unit=st.sampled_from([1, 8, 512]), max_successors=st.integers(3, 4),
                  max_keys_per_tenant=st.integers(1, 6),
                  gap_edges=st.just((0.5, 2.0, 5.0)), size_edges=st.just((3.0, 7.0)),
                  ahead_window=st.integers(1, 5), ahead_ranks=st.integers(0, 3),
                  ahead_successors=st.integers(0, 6),  # 0: max_successors
                  ahead_lead=st.integers(0, 6),
                  # from less than one row to a few dozen: evictions at every step
                  table_bytes=st.one_of(st.integers(1, 8_000), st.just(1 << 40)))


@settings(max_examples=150, deadline=None)
@given(spec=SPECS, events=EVENTS, forget_at=st.integers(0, 200))
def test_step_matches_the_reference(spec: FeatureSpec, events: list[AccessEvent],
                                    forget_at: int) -> None:
    ref, native = ReferenceTracker(spec), CandidateTracker(spec)
    for i, ev in enumerate(events):
        if i == forget_at:  # a forgotten tenant's rows no longer count
            native.forget("t1")
            ref.forget("t1")
        assert native.step(ev) == ref.step(ev), ev
        assert tuple(native.table_stats()) == ref.table_stats()
        assert native.table_stats().bytes <= spec.table_bytes
    for tenant in ("t1", "t2", "tenant-ü"):
        for key in ("1", "a", "7"):
            from stream_warmer.model.features import parse_key

            k = parse_key(key)
            assert native.top_successors(tenant, k, 3) == ref.top_successors(tenant, k, 3)
    assert len(native) == len(ref)


@settings(max_examples=80, deadline=None)
@given(spec=SPECS, events=EVENTS, cut=st.integers(0, 120), lead=st.integers(0, 6),
       horizon=st.integers(1, 4))
def test_batch_and_encode_match_the_reference(spec: FeatureSpec, events: list[AccessEvent],
                                              cut: int, lead: int, horizon: int) -> None:
    ref = ReferenceTracker(spec)
    steps = [ref.step(ev) for ev in events]
    cut = min(cut, len(events))
    native = CandidateTracker(spec)
    head = native.step_batch(events[:cut], keep=True, marks_k=4)
    tail = native.step_batch(events[cut:], keep=True)
    cats = np.concatenate([head.cats, tail.cats])
    masks = np.concatenate([head.masks, tail.masks])
    assert cats.tolist() == [list(s.cats) for s in steps]
    assert masks.tolist() == [[s.correct, s.present] for s in steps]
    assert head.cands is not None and tail.cands is not None
    assert [*head.cands, *tail.cands] == [s.cands for s in steps]
    # group / pos: each event's tenant (first appearance order) and place in its run
    for batch, part in ((head, events[:cut]), (tail, events[cut:])):
        seen: dict[str, int] = {}
        for ev, g, p in zip(part, batch.group, batch.pos, strict=True):
            assert batch.tenants[g] == ev.tenant
            assert p == seen.get(ev.tenant, 0)
            seen[ev.tenant] = p + 1
    cats_e, correct, present, target, tenant, cands = CandidateTracker(spec).encode(
        events, cut, lead=lead, horizon=horizon)
    assert cats_e.tolist() == cats.tolist()
    assert correct.tolist() == [s.correct for s in steps]
    assert present.tolist() == [s.present for s in steps]
    assert list(cands) == [s.cands for s in steps[cut:]]
    assert target.tolist() == _horizon_targets(events, steps, lead, horizon)
    if (lead, horizon) == (0, 1):  # the one-step target: the next step's correct mask
        nxt: dict[str, int] = {}
        expected = [-1] * len(events)
        for i in range(len(events) - 1, -1, -1):
            j = nxt.get(events[i].tenant)
            if j is not None:
                expected[i] = steps[j].correct
            nxt[events[i].tenant] = i
        assert target.tolist() == expected
    order = list(dict.fromkeys(ev.tenant for ev in events))
    assert tenant.tolist() == [order.index(ev.tenant) for ev in events]


def _horizon_targets(events: list[AccessEvent], steps: list[Any], lead: int, horizon: int
                     ) -> list[int]:
    """Step i's target read off its definition: the classes whose key the tenant asks
    for after stream index i + lead, within its next ``horizon`` requests from there,
    and not at or before i + lead (NO-WARM when none; -1 when the horizon never ends)."""
    out = [-1] * len(events)
    for i, ev in enumerate(events):
        spoiled = right = seen = 0
        for j in range(i + 1, len(events)):
            if events[j].tenant != ev.tenant:
                continue
            key = parse_key(events[j].key)
            bits = sum(1 << c for c, cand in enumerate(steps[i].cands) if cand == key)
            if j <= i + lead:
                spoiled |= bits
            else:
                right |= bits & ~spoiled
                seen += 1
                if seen == horizon:
                    out[i] = right or 1
                    break
    return out


def test_window_candidates_and_a_late_target_by_hand() -> None:
    """A tenant cycling a0..a9: a0's one-step successor is a1, the window table's next
    best a2, a3; a warm named at a0 lands two requests late, after a1 and a2, so the
    class that named a3 is the one that was right."""
    spec = FeatureSpec(ranks=1, ahead_window=4, ahead_ranks=2)
    events = [AccessEvent("t", f"a{i % 10}", i) for i in range(60)]
    _, _, present, target, _, cands = CandidateTracker(spec).encode(
        events, 0, lead=2, horizon=1)
    i = 50  # a0 again
    assert cands[i][:2] == [None, "a1"]
    assert cands[i][-2:] == ["a2", "a3"]
    assert present[i] >> (spec.n_classes - 2) == 0b11
    assert target[i] == 1 << (spec.n_classes - 1)  # a3's class alone


def test_the_window_starts_where_a_warm_would_land() -> None:
    """With the window table trained for a delay of two requests, a0's window is what
    the tenant asks for from three requests on (a3..a6): a1 and a2 come before a warm
    named at a0 would land. The AHEAD classes name a3, a4, a5, and a3's is the one
    right. Moved to lead 0 (a hot swap), the tables are kept and a2 starts to count."""
    spec = FeatureSpec(ranks=1, ahead_window=4, ahead_ranks=3, ahead_lead=2)
    events = [AccessEvent("t", f"a{i % 10}", i) for i in range(60)]
    tracker, ref = CandidateTracker(spec), ReferenceTracker(spec)
    _, _, _, target, _, cands = tracker.encode(events, 0, lead=2, horizon=1)
    i = 50  # a0 again
    assert cands[i][:2] == [None, "a1"]
    assert cands[i][-3:] == ["a3", "a4", "a5"]
    assert target[i] == 1 << (spec.n_classes - 3)  # a3's class
    assert [ref.step(ev).cands for ev in events] == [cands[j] for j in range(len(events))]
    tracker.set_ahead_lead(0)
    ref.spec = dataclasses.replace(ref.spec, ahead_lead=0)
    assert tracker.spec == ref.spec
    for j in range(60, 300):
        ev = AccessEvent("t", f"a{j % 10}", j)
        assert tracker.step(ev) == ref.step(ev)
    assert tracker.step(AccessEvent("t", "a0", 300)).cands[-3:] == ["a3", "a4", "a2"]


def test_a_full_successor_table_replaces_the_latest_least_frequent() -> None:
    spec = FeatureSpec(ranks=2, max_successors=4)
    ref, native = ReferenceTracker(spec), CandidateTracker(spec)
    for i, key in enumerate(["x", "a", "x", "a", "x", "b", "x", "c", "x", "d", "x", "e", "x"]):
        ev = AccessEvent(tenant="t", key=key, ts=i)
        assert native.step(ev) == ref.step(ev)
    assert native.top_successors("t", "x", 4) == ["a", "b", "c", "e"]  # d went, not b


def test_marks_are_the_top_successors_right_after_each_step() -> None:
    spec = FeatureSpec(ranks=1, max_successors=4)
    events = [AccessEvent(tenant="t", key=k, ts=i) for i, k in enumerate("1213141512")]
    ref = ReferenceTracker(spec)
    expected = []
    for ev in events:
        ref.step(ev)
        expected.append([str(k) for k in ref.top_successors("t", int(ev.key), 3)])
    batch = CandidateTracker(spec).step_batch(events, keep=True, marks_k=3)
    assert batch.cands is not None
    assert [batch.cands.marks(i) for i in range(len(events))] == expected


@settings(max_examples=60, deadline=None)
@given(spec=SPECS, events=EVENTS, k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_choose_matches_the_reference_pooling(spec: FeatureSpec, events: list[AccessEvent],
                                              k: int, seed: int) -> None:
    ref = ReferenceTracker(spec)
    cands = [ref.step(ev).cands for ev in events]
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(spec.n_classes), size=len(events)).astype(np.float32)
    probs[:, 1] = probs[:, 2]  # equal scores: ties must break the same way
    expected = reference_choose(probs.tolist(), cands, k)
    assert choose(probs, cands, k) == expected
    batch = CandidateTracker(spec).step_batch(events, keep=True)
    assert batch.cands is not None
    assert choose(probs, batch.cands, k) == expected
    # serve's decode of the steps asked about: those rows only, in the order asked
    asked = sorted(rng.choice(len(events), size=(len(events) + 1) // 2, replace=False),
                   reverse=True)
    full = batch.cands.choose(probs.tobytes(), k, as_str=True, threshold=0.2)
    assert batch.cands.choose(probs[asked].tobytes(), k, as_str=True, threshold=0.2,
                              steps=[int(i) for i in asked]) == [full[i] for i in asked]
    # the tenant's newest step, str keys, threshold before the cap
    native = CandidateTracker(spec)
    native.step_batch(events)
    tenants = list(dict.fromkeys(ev.tenant for ev in events))
    last = {ev.tenant: i for i, ev in enumerate(events)}
    native.set_probs(tenants, probs[[last[t] for t in tenants]])
    got = native.choose(tenants, k, 0.2)
    want = [[(str(key), min(1.0, p)) for key, p in expected[last[t]] if p >= 0.2]
            for t in tenants]
    assert got == want


def test_seed_matches_the_reference() -> None:
    spec = FeatureSpec(max_successors=2, max_keys_per_tenant=3)
    table = [("1", {"2": 3, "3": 1, "4": 3}), ("2", {"1": 1}), ("x", {"1": 2}),
             ("1", {"3": 5}), ("5", {"6": 1})]
    ref, native = ReferenceTracker(spec), CandidateTracker(spec)
    ref.seed("t", table)
    native.seed("t", table)
    for key in (1, 2, "x", 5):
        assert native.top_successors("t", key, 2) == ref.top_successors("t", key, 2)
    ev = AccessEvent(tenant="t", key="1", ts=0)
    assert native.step(ev) == ref.step(ev)


def test_bad_probabilities_are_refused() -> None:
    native = CandidateTracker(FeatureSpec())
    native.step(AccessEvent(tenant="t", key="1", ts=0))
    with pytest.raises(ValueError, match="one row"):
        native.set_probs(["t", "u"], np.zeros((1, FeatureSpec().n_classes), np.float32))
    cands = native.step_batch([AccessEvent(tenant="t", key="2", ts=1)], keep=True).cands
    assert cands is not None
    row = np.zeros((1, FeatureSpec().n_classes), np.float32).tobytes()
    for steps in ([1], [0, 0]):  # out of range; more steps than rows
        with pytest.raises(ValueError, match="one row"):
            cands.choose(row, 1, steps=steps)


def test_memory_is_reported_and_bounded_by_the_table_bounds() -> None:
    spec = FeatureSpec(max_successors=2, max_keys_per_tenant=100)
    native = CandidateTracker(spec)
    for i in range(20_000):
        native.step(AccessEvent(tenant="t", key=str(i % 5000), ts=i))
    assert native.table_len("t") == 100
    one = native.memory_bytes()
    assert 0 < one < 100 * 400  # bytes per key row, bounded
    for i in range(20_000):
        native.step(AccessEvent(tenant="t", key=str(i), ts=i))
    assert native.memory_bytes() < 2 * one


@settings(max_examples=150, deadline=None)
@given(events=EVENTS, max_keys=st.integers(1, 6), max_succ=st.integers(1, 4),
       k=st.integers(1, 5), budget=st.one_of(st.integers(1, 3_000), st.just(1 << 40)))
def test_markov_matches_its_python_reference(events: list[AccessEvent], max_keys: int,
                                             max_succ: int, k: int, budget: int) -> None:
    """The served ``markov`` (native tables) warms what the Python baseline warmed:
    same keys, same order, same scores, with its bounds (the memory budget too) biting
    all the time."""
    ref = ReferenceMarkov(max_keys, max_succ, budget)
    native = Markov(max_keys, max_succ, budget)
    for ev, want in zip(events, ref.predict_stream(events, k), strict=True):
        assert next(iter(native.predict_stream([ev], k))) == want
        assert tuple(native.table_stats()) == ref.table_stats()
        assert native.table_stats().bytes <= budget


def test_tenants_share_one_budget_least_recently_used_row_first() -> None:
    """Three tenants, a budget of 7 one-successor rows: the rows that go are the least
    recently used of any tenant, so the tenant with many keys ends up holding all 7 (a
    per-tenant share would be 2), and an idle tenant's rows go before a busy one's."""
    row = row_bytes(1, [2])  # an integer key with one integer successor
    native, ref = Markov(1 << 40, 8, 7 * row), ReferenceMarkov(1 << 40, 8, 7 * row)
    events = [AccessEvent(t, k, 0) for t, k in [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]]
    events += [AccessEvent("big", str(k), 0) for k in range(1, 7)]  # rows a1 b1 big1..5
    events += [AccessEvent("big", str(k), 0) for k in (7, 8)]  # evict a1, then b1

    def run(evs: list[AccessEvent]) -> None:
        for ev, want in zip(evs, ref.predict_stream(evs, 2), strict=True):
            assert next(iter(native.predict_stream([ev], 2))) == want

    run(events)
    lens = {t: native.tables.table_len(t) for t in ("a", "b", "big")}
    assert lens == {"a": 0, "b": 0, "big": 7} == {t: ref.table_len(t) for t in lens}
    assert tuple(native.table_stats()) == (7 * row, 7, 2, 7 * row) == ref.table_stats()
    run([AccessEvent("a", "3", 0)])  # a's row 2 -> 3 evicts big's least recent row, 1
    assert [native.tables.table_len(t) for t in ("a", "b", "big")] == [1, 0, 6]
    assert native.predict([Window("big", (AccessEvent("big", "1", 0),))], 1) == [[]]
    assert [p.key for p in native.predict([Window("big", (AccessEvent("big", "2", 0),))],
                                          1)[0]] == ["3"]
    assert native.table_stats().evictions == 3


def test_a_tracker_holds_its_budget_over_many_keys() -> None:
    """20,000 distinct string keys through a 64 KiB budget: the charge never exceeds it,
    it fills, and what the tracker actually holds stays near it (not growing)."""
    budget = 64 << 10
    native = CandidateTracker(FeatureSpec(ahead_window=4, ahead_ranks=1, table_bytes=budget))
    held = []
    for i in range(20):
        native.step_batch([AccessEvent(f"t{j % 3}", f"key-{i}-{j}", j) for j in range(1000)])
        stats = native.table_stats()
        assert stats.bytes <= budget and stats.budget == budget
        held.append(native.memory_bytes())
    assert stats.bytes > budget - 2_000 and stats.evictions > 10_000
    assert stats.rows > budget // 400
    assert max(held[5:]) < 4 * budget  # allocations follow the charge


@settings(max_examples=100, deadline=None)
@given(spec=SPECS, events=EVENTS)
def test_markov_and_the_tracker_keep_one_table(spec: FeatureSpec,
                                               events: list[AccessEvent]) -> None:
    """Under the same bounds (the memory budget too) the LSTM tracker's rank candidates
    are the ``markov`` baseline's top successors (what the budget's Markov shadow
    warms), and seeding the tracker from the baseline's tables gives the same
    candidates."""

    spec = dataclasses.replace(spec, ahead_window=0, ahead_ranks=0)  # no window tables
    markov = Markov(spec.max_keys_per_tenant, spec.max_successors, spec.table_bytes)
    tracker, seeded = CandidateTracker(spec), CandidateTracker(spec)
    for ev, preds in zip(events, markov.predict_stream(events, spec.ranks), strict=True):
        ranks = [c for c in tracker.step(ev).cands[1 : 1 + spec.ranks] if c is not None]
        assert [str(c) for c in ranks] == [p.key for p in preds]
    for tenant in markov.tables.tenants():
        seeded.seed(tenant, markov.tables.rows(tenant))
        for key, _ in markov.tables.rows(tenant):
            from stream_warmer.model.features import parse_key

            k = parse_key(key)
            assert seeded.top_successors(tenant, k, 3) == tracker.top_successors(tenant, k, 3)
    assert seeded.table_stats()[:2] == tracker.table_stats()[:2] == markov.table_stats()[:2]
