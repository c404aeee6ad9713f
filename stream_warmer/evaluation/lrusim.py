"""The cache of the warm-eval protocol: an object-count LRU with warm accounting.

The protocol itself (what is counted, when a warm lands) is ``warmeval``'s docstring;
this is the cache one strategy's predictions feed, at one capacity and one delay.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

Item = tuple[str, str]  # (tenant, key)


@dataclass(slots=True)
class LruSim:
    """An object-count LRU with warm accounting; values mark counted, unhit warms.

    ``delay`` L > 0 holds the warms named after request i back until request i + L
    has been served (``warmeval``'s docstring); ``pending`` is that queue.
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

    def step(self, item: Item, warms: list[Item], counting: bool) -> None:
        """One request for ``item``, then the warms due now (those named after it at L=0)."""
        self.request(item, counting)
        if self.delay:
            warms = self._due(warms)
        warm = self.warm
        for named in warms:
            warm(named, counting)

    def request(self, item: Item, counting: bool) -> bool:
        """Serve a request for ``item``: True on a hit (moved to MRU), else inserted."""
        lru = self.lru
        if counting:
            self.requests += 1
        mark = lru.get(item)
        if mark is None:
            lru[item] = False
            if len(lru) > self.capacity:
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
        if len(lru) > self.capacity:
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
