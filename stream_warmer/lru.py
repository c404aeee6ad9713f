"""The one object-count LRU: the warm-eval protocol's cache, and every shadow of a cache.

The evaluator feeds one per strategy, capacity and delay (``evaluation.warmeval``'s
docstring has the protocol: what is counted, when a warm lands); the LSTM's threshold
fit (``model.threshold``), the online warm budget's shadows (``model.budget``), the
published peers' presence filter (``strategies.peers``) and ``bench live``'s
application cache use the same class, so a cache hit means the same everywhere.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

Item = tuple[str, Hashable]  # (tenant, key)


@dataclass(slots=True)
class LruSim:
    """An object-count LRU with warm accounting; values mark counted, unhit warms.

    ``delay`` L > 0 holds the warms named after request i back until request i + L
    has been served (``warmeval``'s docstring); ``pending`` is that queue. The
    capacity may be changed between calls (a shadow told a new cache size): the next
    insert evicts down to it.
    """

    capacity: int
    delay: int = 0
    lru: OrderedDict[Item, bool] = field(default_factory=OrderedDict)
    pending: deque[tuple[int, list[Item]]] = field(default_factory=deque)
    served: int = 0  # requests seen so far, counted or not (the delay's clock)
    requests: int = 0
    hits: int = 0
    warms: int = 0
    useful: int = 0

    def step(self, item: Item, warms: list[Item], counting: bool) -> int:
        """One request for ``item``, then the warms due now (those named after it at L=0);
        returns how many of those were effective."""
        self.request(item, counting)
        if self.delay:
            warms = self._due(warms)
        warm = self.warm
        effective = 0
        for named in warms:
            effective += warm(named, counting)
        return effective

    def request(self, item: Item, counting: bool) -> bool:
        """Serve a request for ``item``: True on a hit (moved to MRU), else inserted."""
        lru = self.lru
        if counting:
            self.requests += 1
        mark = lru.get(item)
        if mark is None:
            lru[item] = False
            while len(lru) > self.capacity:
                lru.popitem(last=False)
            return False
        lru.move_to_end(item)
        if counting:
            self.hits += 1
        if mark:
            self.useful += 1
            lru[item] = False
        return True

    def warm(self, item: Item, counting: bool) -> bool:
        """Apply a warm of ``item`` now: True when effective (not cached: inserted at MRU)."""
        lru = self.lru
        if item in lru:
            return False
        lru[item] = counting
        if counting:
            self.warms += 1
        while len(lru) > self.capacity:
            lru.popitem(last=False)
        return True

    def _due(self, warms: list[Item]) -> list[Item]:
        """Queue the warms just named; hand back those due after this request, if any."""
        index = self.served
        self.served = index + 1
        pending = self.pending
        if warms:
            pending.append((index + self.delay, warms))
        if pending and pending[0][0] <= index:  # one entry per request: at most one due
            return pending.popleft()[1]
        return []

    def hit_ratio(self) -> float:
        """Hits / counted requests (``nan`` before any)."""
        return self.hits / self.requests if self.requests else math.nan

    def warms_per_request(self) -> float:
        """Counted effective warms / counted requests (``nan`` before any request)."""
        return self.warms / self.requests if self.requests else math.nan


def replay(pairs: Sequence[Item], warms: Sequence[Item | None], capacity: int,
           count_from: int, delay: int = 0) -> tuple[float, float]:
    """(hit ratio, effective warms per request) of requests ``pairs`` with at most one
    warm after each (``None``: none) applied ``delay`` requests late, counted from
    request ``count_from`` on."""
    sim = LruSim(capacity, delay)
    for i, (pair, warm) in enumerate(zip(pairs, warms, strict=True)):
        sim.step(pair, [] if warm is None else [warm], i >= count_from)
    n = max(1, len(pairs) - count_from)
    return sim.hits / n, sim.warms / n
