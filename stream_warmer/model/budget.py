"""Online warm budget: keep the strategy's effective warms at or below the better baseline's.

The trained threshold is only a starting point: the share of warms that are
*effective* (the key was not already cached) drifts with the workload. The controller
replays three shadow object-count LRU caches of ``cache_frac`` x distinct (tenant, key)
pairs seen so far — one fed by this strategy's warms, one by the Markov successor's,
one by the next key's — and nudges the threshold (dual ascent) so that the smoothed
effective warm rate stays within ``1 - margin`` of the baseline whose shadow hit ratio
is higher. Nothing here is fitted to a trace; it only measures the stream.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

Pair = tuple[str, str]


@dataclass(slots=True)
class ShadowLru:
    """An object-count LRU that reports hits and effective warms."""

    lru: OrderedDict[Pair, None] = field(default_factory=OrderedDict)

    def request(self, pair: Pair, capacity: int) -> bool:
        """Access ``pair``; True on a hit."""
        if pair in self.lru:
            self.lru.move_to_end(pair)
            return True
        self._insert(pair, capacity)
        return False

    def warm(self, pair: Pair | None, capacity: int) -> bool:
        """Warm ``pair``; True when it was effective (not already cached)."""
        if pair is None or pair in self.lru:
            return False
        self._insert(pair, capacity)
        return True

    def _insert(self, pair: Pair, capacity: int) -> None:
        self.lru[pair] = None
        while len(self.lru) > capacity:
            self.lru.popitem(last=False)


class WarmBudget:
    """Threshold controller (see the module docstring)."""

    def __init__(self, threshold: float, cache_frac: float, margin: float, *,
                 lr: float = 2e-3, halflife: int = 2000, max_distinct: int = 5_000_000) -> None:
        self.threshold = threshold
        self.cache_frac = cache_frac
        self.margin = margin
        self.lr = lr
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife)
        self.max_distinct = max_distinct
        self._seen: set[Pair] = set()
        self._shadows = (ShadowLru(), ShadowLru(), ShadowLru())  # ours, markov, nextkey
        self.warm_rate = [0.0, 0.0, 0.0]
        self.hit_rate = [0.0, 0.0, 0.0]

    def step(self, pair: Pair, scored: list[tuple[str, float]], markov: str | None,
             nextkey: str | None) -> list[tuple[str, float]]:
        """Account one request; return the warms of ``scored`` that pass the threshold."""
        if len(self._seen) < self.max_distinct:
            self._seen.add(pair)
        cap = max(1, int(self.cache_frac * len(self._seen)))
        keep = [(key, s) for key, s in scored if s >= self.threshold]
        warms = ([(pair[0], key) for key, _ in keep],
                 [(pair[0], markov)] if markov is not None else [],
                 [(pair[0], nextkey)] if nextkey is not None else [])
        a = self.alpha
        for i, shadow in enumerate(self._shadows):
            hit = shadow.request(pair, cap)
            eff = sum(shadow.warm(w, cap) for w in warms[i])
            self.hit_rate[i] += a * (hit - self.hit_rate[i])
            self.warm_rate[i] += a * (eff - self.warm_rate[i])
        base = 1 if self.hit_rate[1] >= self.hit_rate[2] else 2
        gap = self.warm_rate[0] - (1.0 - self.margin) * self.warm_rate[base]
        self.threshold = min(1.0, max(0.0, self.threshold + self.lr * gap))
        return keep
