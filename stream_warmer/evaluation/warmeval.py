"""The warm-eval protocol of DESIGN §5, exactly.

A trace is replayed in order through an object-count LRU of capacity
``C = floor(f x distinct (tenant, key) pairs)``. For each request: a hit if cached
(moved to MRU), else a miss (inserted at MRU, LRU evicted past C). Then the strategy
observes the request and names up to k keys of the same tenant; each named key not
already cached is inserted at MRU (an *effective warm*, evicting past C); a named
key already cached is left where it is. The first ``n // 2`` requests only train
and fill; on the rest we count:

- ``hit_ratio`` = hits / counted requests (``requests`` in a row is that count);
- ``warm_precision`` = effective warms issued in the counted half that were hit
  before being evicted / effective warms issued in the counted half (a warm still
  cached and unhit at the end counts as not useful; warms issued in the training
  half never count, even when hit later); ``nan`` when there were no warms;
- ``warms_per_request`` = effective warms in the counted half / counted requests.

Delay (DESIGN §8, ``delays``): with a delay of L requests, the warms named after
request i are applied only after request i + L has been served (L counts every
request of the interleaved stream, all tenants; 0 is the protocol above, exactly).
At that moment a named key that is not cached is an effective warm (inserted at MRU,
evicting past C), one that is cached (e.g. requested, and missed, in between) is left
alone. A warm counts in the half where it is *applied* ("issued" above means
applied): one named in the training half and applied in the counted half counts (and
can be useful); warms still pending at the end of the trace are never applied. Each
cache keeps a deque of pending warms keyed by the request index at which they apply,
so a step stays O(1) in L; one replay serves every delay, as it serves every f.

Each strategy is told its cache's capacity C before replay (``set_cache_capacity``,
as a production warmer is configured with it). Predictions do not depend on cache
state, so one instance per k serves the caches of every f, unless the strategy is
capacity-aware (it overrides the hook): then it gets one instance per f. All
strategies share one read of the trace
(``itertools.tee`` keeps them in step; a strategy that batches inside
``predict_stream`` only makes the tee buffer its batch).

Timing (``train_s``, ``replay_s``; wall seconds of this process, per strategy and
trace, the same on each of the strategy's rows, never part of the numbers above):
``train_s`` is building the strategy's instances and telling them C (the ``lstm``
training on the first half, reading that half included; ~0 for a baseline);
``replay_s`` is its ``predict_stream`` (all its instances), less the time spent
reading the trace, which the strategies share and ``ReplayTimes`` reports with the
counting pass.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import tee

from stream_warmer.evaluation.delay import check_delays
from stream_warmer.evaluation.rows import (
    EvalRow,
    FixedThreshold,
    PresenceThreshold,
    ReplayTimes,
    StrategySpec,
    TraceStats,
    WarmRateGate,
    capacity_for,
    scan,
)
from stream_warmer.events import AccessEvent
from stream_warmer.lru import LruSim
from stream_warmer.strategies.base import Prediction, WarmingStrategy
from stream_warmer.strategies.presence import Presence

__all__ = [
    "EvalRow",
    "FixedThreshold",
    "LruSim",
    "ReplayTimes",
    "StrategySpec",
    "TraceStats",
    "WarmRateGate",
    "capacity_aware",
    "capacity_for",
    "evaluate",
    "evaluate_events",
    "scan",
]

EventSource = Callable[[], Iterable[AccessEvent]]


@dataclass(slots=True)
class _Cache:
    """One cache a lane feeds: its f, its replay, and what holds it: the iso-warm gate,
    a fixed threshold (a frontier point; picking with a presence shadow for a strategy
    that does), or None (the strategy's own warm rate)."""

    frac: float
    sim: LruSim
    gate: WarmRateGate | FixedThreshold | PresenceThreshold | None = None


@dataclass(slots=True)
class _Lane:
    """One strategy instance and the caches (per k: per f, rate and delay) it feeds."""

    name: str
    strategy: WarmingStrategy
    k: int
    caches: list[tuple[int, list[_Cache]]]
    replay_s: float = 0.0  # its predictions in the replay
    # the strategy's confidence floor, taken over for its iso-warm gates
    # (``WarmingStrategy.release_floor``): its own caches apply it (0: none)
    floor: float = 0.0


def evaluate(
    trace: str,
    source: EventSource,
    specs: Sequence[StrategySpec],
    ks: Sequence[int],
    fracs: Sequence[float],
    *,
    stats: TraceStats | None = None,
    delays: Sequence[int] = (0,),
    times: ReplayTimes | None = None,
    warm_rates: Sequence[float] = (),
    thresholds: Sequence[float] = (),
) -> list[EvalRow]:
    """Rows for every strategy x k x f x delay, from one replay of the trace.

    ``source()`` must return a fresh iterable of the trace's events on each call (it
    is called twice when ``stats`` is not given: once to count, once to replay).
    ``delays`` are in requests (module docstring; the default is DESIGN §5 alone).
    ``warm_rates`` add, for each rate W, a cache per (k, f, delay) held at W effective
    warms per request by a ``WarmRateGate`` (rows with ``warm_rate`` W), fed by the same
    predictions; ``thresholds`` a cache per threshold T that takes the named warms
    scoring at least T (``FixedThreshold``; rows with ``threshold`` T: the strategy's
    frontier). Rows come in the order strategy, k, then its own rows, the held ones
    (by W) and the frontier's (by T), each by f and delay. ``times``, when given, gets
    the shared seconds (the per-strategy ones are in the rows).
    """
    if not specs or not ks or not fracs or not delays:
        return []
    check_delays(delays)
    times = times if times is not None else ReplayTimes()
    if stats is None:
        started = time.perf_counter()
        stats = scan(source())
        times.scan_s += time.perf_counter() - started
    caches = [(f, capacity_for(f, stats.distinct)) for f in fracs]
    lanes, train_s = _lanes(specs, ks, caches, delays, warm_rates=warm_rates,
                            thresholds=thresholds)
    times.read_s += _replay(source(), lanes, stats.requests // 2)
    return _rows(trace, specs, lanes, train_s, fracs=fracs, delays=delays)


def evaluate_events(
    events: Sequence[AccessEvent],
    spec: StrategySpec,
    k: int,
    capacity: int,
    *,
    delay: int = 0,
    warmup: int | None = None,
    trace: str = "events",
) -> EvalRow:
    """One row for an in-memory list of events and a given cache capacity C.

    For a benchmark that knows its C (e.g. the live closed loop of DESIGN §8): the
    same replay as ``evaluate``, with ``spec`` at this ``k`` (its ``ks`` ignored), one
    cache of ``capacity`` and ``delay`` requests. The first ``warmup`` requests only
    train and fill (default ``len(events) // 2``, as §5). The row's ``cache_frac`` is
    ``capacity / distinct pairs`` of ``events``.
    """
    check_delays([delay])
    distinct = scan(events).distinct
    frac = capacity / distinct if distinct else math.nan
    [lane], train_s = _lanes([StrategySpec(spec.name, spec.make, ks=(k,))], [k],
                             [(frac, capacity)], [delay])
    _replay(events, [lane], len(events) // 2 if warmup is None else warmup)
    [row] = _rows(trace, [spec], [lane], train_s)
    return row


def _rows(trace: str, specs: Sequence[StrategySpec], lanes: list[_Lane],
          train_s: dict[str, float], *, fracs: Sequence[float] = (),
          delays: Sequence[int] = ()) -> list[EvalRow]:
    """The lanes' rows in the order strategy, k, own before held, W, f, delay (f and
    delay in the order given: a strategy trained per delay has a lane per delay)."""
    replay_s = dict.fromkeys(train_s, 0.0)
    for lane in lanes:
        replay_s[lane.name] += lane.replay_s
    rows = [
        _row(c.sim, trace, lane.name, c.frac, k, train_s=train_s[lane.name],
             replay_s=replay_s[lane.name],
             warm_rate=c.gate.target if isinstance(c.gate, WarmRateGate) else None,
             threshold=(c.gate.threshold
                        if isinstance(c.gate, FixedThreshold | PresenceThreshold) else None))
        for lane in lanes
        for k, caches in lane.caches
        for c in caches
    ]
    order = {spec.name: i for i, spec in enumerate(specs)}
    f_at = {f: i for i, f in enumerate(fracs)}
    d_at = {d: i for i, d in enumerate(dict.fromkeys(delays))}

    def kind(r: EvalRow) -> tuple[int, float]:  # own, held at W, frontier at T
        if r.threshold is not None:
            return 2, r.threshold
        return (0, 0.0) if r.warm_rate is None else (1, r.warm_rate)

    return sorted(rows, key=lambda r: (order[r.strategy], r.k, kind(r),
                                       f_at.get(r.cache_frac, 0), d_at.get(r.delay, 0)))


def _row(sim: LruSim, trace: str, strategy: str, frac: float, k: int, *,
         train_s: float, replay_s: float, warm_rate: float | None = None,
         threshold: float | None = None) -> EvalRow:
    return EvalRow(
        trace=trace,
        strategy=strategy,
        cache_frac=frac,
        k=k,
        capacity=sim.capacity,
        requests=sim.requests,
        hit_ratio=sim.hit_ratio(),
        warm_precision=sim.useful / sim.warms if sim.warms else math.nan,
        warms_per_request=sim.warms_per_request(),
        delay=sim.delay,
        warm_rate=warm_rate,
        threshold=threshold,
        train_s=round(train_s, 3),
        replay_s=round(replay_s, 3),
    )


def capacity_aware(strategy: WarmingStrategy) -> bool:
    """True when ``strategy`` overrides ``set_cache_capacity`` (its warms depend on C)."""
    return type(strategy).set_cache_capacity is not WarmingStrategy.set_cache_capacity


def _lanes(specs: Sequence[StrategySpec], all_ks: Sequence[int],
           caches: list[tuple[float, int]], delays: Sequence[int],
           *, warm_rates: Sequence[float] = (), thresholds: Sequence[float] = ()
           ) -> tuple[list[_Lane], dict[str, float]]:
    """One lane per instance: per k unless ``nested_k``, per f when capacity-aware; and,
    for a strategy that picks with a shadow (``picking``), one lane of its twin that
    feeds its frontier caches.

    Every instance is told its cache capacity before replay. A factory that hands
    back the same instance again (one shared strategy) gets one lane for all caches,
    told the smallest capacity. A strategy does not see the cache, so one instance
    feeds one cache per (f, delay), unless its spec makes instances for a delay
    (``for_delay``: the lstm, trained for it): then each delay has its own lanes. Also
    returns the seconds each strategy took to build and size its instances (``train_s``).
    """
    lanes = []
    train_s: dict[str, float] = {}
    delays = list(dict.fromkeys(delays))
    for spec in specs:
        started = time.perf_counter()
        for_delay = spec.for_delay
        groups = ([(functools.partial(for_delay, d), [d]) for d in delays]
                  if for_delay is not None else [(spec.make, delays)])
        for make, dl in groups:
            lanes.extend(_spec_lanes(spec, make, all_ks=all_ks, caches=caches, delays=dl,
                                     warm_rates=warm_rates, thresholds=thresholds))
        train_s[spec.name] = train_s.get(spec.name, 0.0) + time.perf_counter() - started
    return lanes, train_s


def _spec_lanes(spec: StrategySpec, make: Callable[[], WarmingStrategy], *,
                all_ks: Sequence[int], caches: list[tuple[float, int]], delays: Sequence[int],
                warm_rates: Sequence[float], thresholds: Sequence[float]) -> list[_Lane]:
    """``_lanes`` for the instances ``make`` builds, feeding caches at ``delays``."""
    ks = sorted(set(spec.ks or all_ks))
    first = make()
    k_groups = [ks] if getattr(first, "nested_k", False) else [[k] for k in ks]
    c_groups = [[c] for c in caches] if capacity_aware(first) else [caches]
    made = [first] + [make() for _ in range(len(k_groups) * len(c_groups) - 1)]
    if len(c_groups) > 1 and any(s is first for s in made[1:]):
        c_groups, made = [caches], made[: len(k_groups)]
    lanes = []
    for strategy, (kg, cg) in zip(made, [(kg, cg) for kg in k_groups for cg in c_groups],
                                  strict=True):
        capacity = min(c for _, c in cg)
        strategy.set_cache_capacity(capacity)
        # a strategy that picks with a shadow: its frontier caches pick from a twin's
        # candidates, each with a shadow of its own (one more run of its model)
        picking = strategy.picking() if thresholds else None
        # held at W or at T, a strategy with its own floor may spend more than its own rate
        floor = (strategy.release_floor() if warm_rates or thresholds else None) or 0.0
        per_k = [(k, [_Cache(f, LruSim(c, d)) for f, c in cg for d in delays]
                  + [_Cache(f, LruSim(c, d), WarmRateGate(w, threshold=floor))
                     for w in warm_rates for f, c in cg for d in delays]
                  + ([] if picking else _at(thresholds, cg, delays))) for k in kg]
        lanes.append(_Lane(spec.name, strategy, kg[-1], per_k, floor=floor))
        if picking is not None:
            twin, n = picking
            twin.set_cache_capacity(capacity)
            lanes.append(_Lane(spec.name, twin, n, [
                (k, [_Cache(f, LruSim(c, d), PresenceThreshold(t, k, Presence(c)))
                     for t in thresholds for f, c in cg for d in delays]) for k in kg]))
    return lanes


def _at(thresholds: Sequence[float], caches: list[tuple[float, int]], delays: Sequence[int]
        ) -> list[_Cache]:
    """A cache per threshold, f and delay, each at its T."""
    return [_Cache(f, LruSim(c, d), FixedThreshold(t))
            for t in thresholds for f, c in caches for d in delays]


def _timed(events: Iterable[AccessEvent], spent: list[float]) -> Iterator[AccessEvent]:
    """``events``, adding the seconds spent reading each one to ``spent[0]``."""
    clock = time.perf_counter
    it = iter(events)
    while True:
        started = clock()
        event = next(it, None)
        spent[0] += clock() - started
        if event is None:
            return
        yield event


def _charged(stream: Iterable[list[Prediction]], lane: _Lane, read: list[float]
             ) -> Iterator[list[Prediction]]:
    """``stream``, adding the seconds of each of its steps to ``lane.replay_s``, less
    the trace reads in them (a batching strategy reads ahead through its tee copy)."""
    clock = time.perf_counter
    it = iter(stream)
    while True:
        started, before = clock(), read[0]
        pred = next(it, None)
        lane.replay_s += clock() - started - (read[0] - before)
        if pred is None:
            return
        yield pred


def _replay(events: Iterable[AccessEvent], lanes: list[_Lane], half: int) -> float:
    """Replay ``events`` through every lane (each lane's prediction seconds go to its
    ``replay_s``); return the seconds spent reading the trace."""
    read = [0.0]
    copies = tee(_timed(events, read), len(lanes) + 1)
    streams = [_charged(lane.strategy.predict_stream(copies[i + 1], lane.k), lane, read)
               for i, lane in enumerate(lanes)]
    # per lane: its own floor (0: none taken over), then per k: (gate, cache, uncut); a
    # gate or fixed threshold filters the warms by their scores, the own caches by the
    # floor; a presence pick takes k of every candidate named (``uncut``: its k is its own)
    feeds = [(lane.floor, [(k, [(c.gate, c.sim, isinstance(c.gate, PresenceThreshold))
                                 for c in caches])
                             for k, caches in lane.caches]) for lane in lanes]
    for i, (event, *preds) in enumerate(zip(copies[0], *streams, strict=True)):
        counting = i >= half
        tenant = event.tenant
        item = (tenant, event.key)
        for (floor, feed), pred in zip(feeds, preds, strict=True):
            warms = [(tenant, p.key) for p in pred]
            scored: list[tuple[tuple[str, str], float]] | None = None  # for the gates, once
            own = warms if not floor else [w for w, p in zip(warms, pred, strict=True)
                                           if p.score >= floor]  # best first: a prefix
            for k, caches in feed:
                named = own[:k] if k < len(own) else own
                for gate, sim, uncut in caches:
                    if gate is None:  # its own rate
                        sim.step(item, named, counting)
                        continue
                    if scored is None:
                        scored = [(w, p.score) for w, p in zip(warms, pred, strict=True)]
                    gate.step(sim, item, scored if uncut else scored[:k], counting)
    return read[0]
