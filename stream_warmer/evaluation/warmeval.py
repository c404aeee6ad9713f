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

Each strategy is told its cache's capacity C before replay (``set_cache_capacity``,
as a production warmer is configured with it). Predictions do not depend on cache
state, so one instance per k serves the caches of every f, unless the strategy is
capacity-aware (it overrides the hook): then it gets one instance per f. All
strategies share one read of the trace
(``itertools.tee`` keeps them in step; a strategy that batches inside
``predict_stream`` only makes the tee buffer its batch).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import tee
from typing import Any

from stream_warmer.events import AccessEvent
from stream_warmer.strategies.base import WarmingStrategy

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

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (``nan`` stays a float; JSON writers map it)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TraceStats:
    """What the first pass learns: request count and distinct (tenant, key) pairs."""

    requests: int
    distinct: int


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
class LruSim:
    """An object-count LRU with warm accounting; values mark counted, unhit warms."""

    capacity: int
    lru: OrderedDict[tuple[str, str], bool] = field(default_factory=OrderedDict)
    requests: int = 0
    hits: int = 0
    warms: int = 0
    useful: int = 0

    def step(self, item: tuple[str, str], warms: list[tuple[str, str]], counting: bool) -> None:
        """One request for ``item``, then the warms named after it (module docstring)."""
        lru = self.lru
        pending = lru.get(item)
        if pending is None:
            lru[item] = False
            if len(lru) > self.capacity:
                lru.popitem(last=False)
        else:
            lru.move_to_end(item)
            if counting:
                self.hits += 1
            if pending:
                self.useful += 1
                lru[item] = False
        if counting:
            self.requests += 1
        for warm in warms:
            if warm not in lru:
                lru[warm] = counting
                if counting:
                    self.warms += 1
                if len(lru) > self.capacity:
                    lru.popitem(last=False)

    def row(self, trace: str, strategy: str, frac: float, k: int) -> EvalRow:
        """The counted numbers of this cache as a result row."""
        n = self.requests
        return EvalRow(
            trace=trace,
            strategy=strategy,
            cache_frac=frac,
            k=k,
            capacity=self.capacity,
            requests=n,
            hit_ratio=self.hits / n if n else math.nan,
            warm_precision=self.useful / self.warms if self.warms else math.nan,
            warms_per_request=self.warms / n if n else math.nan,
        )


@dataclass(slots=True)
class _Lane:
    """One strategy instance and the caches (per k, per f) its predictions feed."""

    name: str
    strategy: WarmingStrategy
    k: int
    fracs: list[float]  # the f of each cache in every ``sims`` list
    sims: list[tuple[int, list[LruSim]]]


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
) -> list[EvalRow]:
    """Rows for every strategy x k x f, from one replay of the trace.

    ``source()`` must return a fresh iterable of the trace's events on each call (it
    is called twice when ``stats`` is not given: once to count, once to replay).
    Rows come in the order strategy, k, f.
    """
    if not specs or not ks or not fracs:
        return []
    stats = stats or scan(source())
    caches = [(f, capacity_for(f, stats.distinct)) for f in fracs]
    lanes = _lanes(specs, ks, caches)
    _replay(source(), lanes, stats.requests // 2)
    rows = [
        sim.row(trace, lane.name, frac, k)
        for lane in lanes
        for k, sims in lane.sims
        for frac, sim in zip(lane.fracs, sims, strict=True)
    ]
    order = {spec.name: i for i, spec in enumerate(specs)}
    return sorted(rows, key=lambda r: (order[r.strategy], r.k))


def capacity_aware(strategy: WarmingStrategy) -> bool:
    """True when ``strategy`` overrides ``set_cache_capacity`` (its warms depend on C)."""
    return type(strategy).set_cache_capacity is not WarmingStrategy.set_cache_capacity


def _lanes(specs: Sequence[StrategySpec], all_ks: Sequence[int],
           caches: list[tuple[float, int]]) -> list[_Lane]:
    """One lane per instance: per k unless ``nested_k``, per f when capacity-aware.

    Every instance is told its cache capacity before replay. A factory that hands
    back the same instance again (one shared strategy) gets one lane for all caches,
    told the smallest capacity.
    """
    lanes = []
    for spec in specs:
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
            sims = [(k, [LruSim(c) for _, c in cg]) for k in kg]
            lanes.append(_Lane(spec.name, strategy, kg[-1], [f for f, _ in cg], sims))
    return lanes


def _replay(events: Iterable[AccessEvent], lanes: list[_Lane], half: int) -> None:
    copies = tee(events, len(lanes) + 1)
    streams = [lane.strategy.predict_stream(copies[i + 1], lane.k) for i, lane in enumerate(lanes)]
    feeds = [[(k, [sim.step for sim in sims]) for k, sims in lane.sims] for lane in lanes]
    for i, (event, *preds) in enumerate(zip(copies[0], *streams, strict=True)):
        counting = i >= half
        tenant = event.tenant
        item = (tenant, event.key)
        for feed, pred in zip(feeds, preds, strict=True):
            warms = [(tenant, p.key) for p in pred]
            for k, steps in feed:
                named = warms[:k] if k < len(warms) else warms
                for step in steps:
                    step(item, named, counting)
