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

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import tee
from typing import Any

from stream_warmer.evaluation.delay import check_delays
from stream_warmer.events import AccessEvent
from stream_warmer.lru import LruSim
from stream_warmer.strategies.base import Prediction, WarmingStrategy

__all__ = [
    "EvalRow",
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


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One result row (the JSON of ``evaluate --json`` is a list of these)."""

    trace: str
    strategy: str
    cache_frac: float
    k: int
    capacity: int
    requests: int
    hit_ratio: float
    warm_precision: float
    warms_per_request: float
    delay: int = 0  # requests between a warm's issue and its application (DESIGN §8)
    # iso-warm rows (``warm_rates``): the effective warms per request the row's cache
    # was held at by ``WarmRateGate``; None: the strategy's own rate
    warm_rate: float | None = None
    # seconds per strategy and trace (module docstring); not compared: rows that only
    # differ in timing are equal
    train_s: float = field(default=math.nan, compare=False)
    replay_s: float = field(default=math.nan, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (``nan`` stays a float; JSON writers map it)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TraceStats:
    """What the first pass learns: request count and distinct (tenant, key) pairs."""

    requests: int
    distinct: int


@dataclass(slots=True)
class ReplayTimes:
    """Shared seconds of one ``evaluate``: the counting pass and the trace reads of the
    replay (what no strategy is charged for); filled in when passed to ``evaluate``."""

    scan_s: float = 0.0
    read_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A strategy to evaluate: its row name and a factory of fresh instances.

    A strategy whose class sets ``nested_k = True`` (its top k is a prefix of its top
    k+1, true of every baseline) runs once at the largest k and serves every k;
    any other gets one instance per k, all fed in the same pass.
    """

    name: str
    make: Callable[[], WarmingStrategy]
    ks: tuple[int, ...] | None = None  # only these k (e.g. ``none``: one k is enough)


@dataclass(slots=True)
class WarmRateGate:
    """Holds one cache at ``target`` effective warms per request (iso-warm comparison).

    A named warm whose score is below ``threshold`` is dropped; after each request the
    threshold moves by ``lr`` x (the request's effective warms - ``target``), within
    [0, 1 + lr] (every score is in [0, 1]; above 1 nothing passes). The same gate holds
    every strategy, on the scores it names its warms with; it can only lower a
    strategy's own rate, so a strategy that names fewer warms stays below the target
    (its row says how many it spent). Scores that tie (nextkey's 1.0) make the
    threshold alternate around them, which holds the long-run rate all the same.
    """

    target: float
    lr: float = 2e-3
    threshold: float = 0.0

    def step(self, sim: LruSim, item: tuple[str, str],
             named: list[tuple[tuple[str, str], float]], counting: bool) -> None:
        """One request of ``sim``, with the named warms that pass the threshold."""
        effective = sim.step(item, [w for w, score in named if score >= self.threshold],
                             counting)
        moved = self.threshold + self.lr * (effective - self.target)
        self.threshold = min(1.0 + self.lr, max(0.0, moved))


@dataclass(slots=True)
class _Lane:
    """One strategy instance and the caches (per k, per f) its predictions feed."""

    name: str
    strategy: WarmingStrategy
    k: int
    fracs: list[float]  # the f of each cache in every ``sims`` list (one per delay)
    sims: list[tuple[int, list[LruSim]]]
    # iso-warm caches, per k: (gate, cache), and the f of each (one per rate and delay)
    gated: list[tuple[int, list[tuple[WarmRateGate, LruSim]]]] = field(default_factory=list)
    gated_fracs: list[float] = field(default_factory=list)
    replay_s: float = 0.0  # its predictions in the replay


def capacity_for(frac: float, distinct: int) -> int:
    """C = floor(f x distinct), at least 1 (REFERENCE.md's C column rounds down)."""
    return max(1, math.floor(frac * distinct + 1e-9))


def scan(events: Iterable[AccessEvent]) -> TraceStats:
    """Count requests and distinct (tenant, key) pairs (the set is held in memory)."""
    seen: set[tuple[str, str]] = set()
    add = seen.add
    n = 0
    for n, event in enumerate(events, start=1):  # noqa: B007 - n is the count
        add((event.tenant, event.key))
    return TraceStats(n, len(seen))


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
) -> list[EvalRow]:
    """Rows for every strategy x k x f x delay, from one replay of the trace.

    ``source()`` must return a fresh iterable of the trace's events on each call (it
    is called twice when ``stats`` is not given: once to count, once to replay).
    ``delays`` are in requests (module docstring; the default is DESIGN §5 alone).
    ``warm_rates`` add, for each rate W, a cache per (k, f, delay) held at W effective
    warms per request by a ``WarmRateGate`` (rows with ``warm_rate`` W), fed by the same
    predictions. Rows come in the order strategy, k, f, delay (the held ones after the
    strategy's own at each k). ``times``, when given, gets the shared seconds (the
    per-strategy ones are in the rows).
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
    lanes, train_s = _lanes(specs, ks, caches, delays, warm_rates)
    times.read_s += _replay(source(), lanes, stats.requests // 2)
    return _rows(trace, specs, lanes, train_s)


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
          train_s: dict[str, float]) -> list[EvalRow]:
    replay_s = dict.fromkeys(train_s, 0.0)
    for lane in lanes:
        replay_s[lane.name] += lane.replay_s
    rows = [
        _row(sim, trace, lane.name, frac, k, train_s=train_s[lane.name],
             replay_s=replay_s[lane.name])
        for lane in lanes
        for k, sims in lane.sims
        for frac, sim in zip(lane.fracs, sims, strict=True)
    ] + [
        _row(sim, trace, lane.name, frac, k, train_s=train_s[lane.name],
             replay_s=replay_s[lane.name], warm_rate=gate.target)
        for lane in lanes
        for k, gates in lane.gated
        for frac, (gate, sim) in zip(lane.gated_fracs, gates, strict=True)
    ]
    order = {spec.name: i for i, spec in enumerate(specs)}
    return sorted(rows, key=lambda r: (order[r.strategy], r.k, r.warm_rate is not None))


def _row(sim: LruSim, trace: str, strategy: str, frac: float, k: int, *,
         train_s: float, replay_s: float, warm_rate: float | None = None) -> EvalRow:
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
        train_s=round(train_s, 3),
        replay_s=round(replay_s, 3),
    )


def capacity_aware(strategy: WarmingStrategy) -> bool:
    """True when ``strategy`` overrides ``set_cache_capacity`` (its warms depend on C)."""
    return type(strategy).set_cache_capacity is not WarmingStrategy.set_cache_capacity


def _lanes(specs: Sequence[StrategySpec], all_ks: Sequence[int],
           caches: list[tuple[float, int]], delays: Sequence[int],
           warm_rates: Sequence[float] = ()) -> tuple[list[_Lane], dict[str, float]]:
    """One lane per instance: per k unless ``nested_k``, per f when capacity-aware.

    Every instance is told its cache capacity before replay. A factory that hands
    back the same instance again (one shared strategy) gets one lane for all caches,
    told the smallest capacity. Delays never need another instance (a strategy does
    not see the cache): each lane feeds one cache per (f, delay). Also returns the
    seconds each strategy took to build and size its instances (its ``train_s``).
    """
    lanes = []
    train_s: dict[str, float] = {}
    delays = list(dict.fromkeys(delays))
    for spec in specs:
        started = time.perf_counter()
        ks = sorted(set(spec.ks or all_ks))
        first = spec.make()
        k_groups = [ks] if getattr(first, "nested_k", False) else [[k] for k in ks]
        c_groups = [[c] for c in caches] if capacity_aware(first) else [caches]
        made = [first] + [spec.make() for _ in range(len(k_groups) * len(c_groups) - 1)]
        if len(c_groups) > 1 and any(s is first for s in made[1:]):
            c_groups, made = [caches], made[: len(k_groups)]
        pairs = [(kg, cg) for kg in k_groups for cg in c_groups]
        for strategy, (kg, cg) in zip(made, pairs, strict=True):
            strategy.set_cache_capacity(min(c for _, c in cg))
            sims = [(k, [LruSim(c, d) for _, c in cg for d in delays]) for k in kg]
            fracs = [f for f, _ in cg for _ in delays]
            gated = [(k, [(WarmRateGate(w), LruSim(c, d)) for w in warm_rates
                          for _, c in cg for d in delays]) for k in kg] if warm_rates else []
            gated_fracs = [f for _ in warm_rates for f, _ in cg for _ in delays]
            lanes.append(_Lane(spec.name, strategy, kg[-1], fracs, sims, gated, gated_fracs))
        train_s[spec.name] = train_s.get(spec.name, 0.0) + time.perf_counter() - started
    return lanes, train_s


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
    feeds = [[(k, [sim.step for sim in sims]) for k, sims in lane.sims] for lane in lanes]
    gated = [lane.gated for lane in lanes]
    for i, (event, *preds) in enumerate(zip(copies[0], *streams, strict=True)):
        counting = i >= half
        tenant = event.tenant
        item = (tenant, event.key)
        for feed, held, pred in zip(feeds, gated, preds, strict=True):
            warms = [(tenant, p.key) for p in pred]
            for k, steps in feed:
                named = warms[:k] if k < len(warms) else warms
                for step in steps:
                    step(item, named, counting)
            if held:
                scored = [(w, p.score) for w, p in zip(warms, pred, strict=True)]
                for k, gates in held:
                    for gate, sim in gates:
                        gate.step(sim, item, scored[:k], counting)
    return read[0]
