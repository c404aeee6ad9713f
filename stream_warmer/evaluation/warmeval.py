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

Predictions do not depend on cache state, so one strategy instance per k serves
the caches of every f, and all strategies share one read of the trace
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
from stream_warmer.strategies.base import Prediction, WarmingStrategy

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
class StrategyRun:
    """One strategy at one k, named as it appears in the rows."""

    name: str
    strategy: WarmingStrategy
    k: int


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


@dataclass(slots=True)
class LruSim:
    """An object-count LRU with warm accounting; values mark counted, unhit warms."""

    capacity: int
    lru: OrderedDict[tuple[str, str], bool] = field(default_factory=OrderedDict)
    requests: int = 0
    hits: int = 0
    warms: int = 0
    useful: int = 0

    def step(self, tenant: str, key: str, preds: Sequence[Prediction], counting: bool) -> None:
        """One request, then its warms (see the module docstring)."""
        lru = self.lru
        item = (tenant, key)
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
        for pred in preds:
            warm = (tenant, pred.key)
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


def evaluate(
    trace: str,
    source: EventSource,
    runs: Sequence[StrategyRun],
    fracs: Sequence[float],
    stats: TraceStats | None = None,
) -> list[EvalRow]:
    """Run every strategy of ``runs`` at every cache fraction over one read of the trace.

    ``source()`` must return a fresh iterable of the trace's events each call (it is
    called twice when ``stats`` is not given: once to count, once to replay).
    """
    if not runs or not fracs:
        return []
    stats = stats or scan(source())
    half = stats.requests // 2
    sims = [[LruSim(capacity_for(f, stats.distinct)) for f in fracs] for _ in runs]
    copies = tee(source(), len(runs) + 1)
    streams = [run.strategy.predict_stream(copies[i + 1], run.k) for i, run in enumerate(runs)]
    steps = [[sim.step for sim in per_run] for per_run in sims]
    for i, (event, *preds) in enumerate(zip(copies[0], *streams, strict=True)):
        counting = i >= half
        tenant, key = event.tenant, event.key
        for run_steps, pred in zip(steps, preds, strict=True):
            for step in run_steps:
                step(tenant, key, pred, counting)
    return [
        sim.row(trace, run.name, frac, run.k)
        for run, per_run in zip(runs, sims, strict=True)
        for frac, sim in zip(fracs, per_run, strict=True)
    ]
