"""Presence: a shadow of the warmed cache, so that a strategy names keys it does not hold.

In the evaluator (DESIGN §5) and in the cache, naming a key the cache already holds
spends one of the request's k slots on nothing. A strategy told the cache's capacity
(``set_cache_capacity``) can replay a shadow object-count LRU of it over all tenants:
each request, then the keys it names, and name the first k of its candidates the shadow
does not hold. At delay 0 the shadow is exactly the evaluator's cache; with a delay it
runs ahead of it (a warm counts as landed when it is named). Memory: the capacity's
(tenant, key) pairs. The published peers (``strategies.peers``) and, with
``model.presence_filter``, the LSTM use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from stream_warmer.lru import LruSim
from stream_warmer.strategies.base import Prediction


class Presence:
    """The shadow LRU of a cache of ``capacity`` objects (module docstring)."""

    def __init__(self, capacity: int) -> None:
        self.sim = LruSim(max(1, int(capacity)))

    def __len__(self) -> int:
        return len(self.sim.lru)

    def request(self, tenant: str, key: str) -> None:
        """The tenant asked for ``key`` (a hit or a fill, as in the cache)."""
        self.sim.request((tenant, key), False)

    def pick(self, tenant: str, candidates: Iterable[tuple[str, float]], k: int
             ) -> list[Prediction]:
        """The first ``k`` of ``candidates`` (best first) the shadow does not hold; the
        shadow takes them in, as the cache will."""
        picked: list[Prediction] = []
        if k < 1:
            return picked
        sim = self.sim
        cached = sim.lru
        for key, score in candidates:
            pair = (tenant, key)
            if pair not in cached:
                sim.warm(pair, False)
                picked.append(Prediction(key, score))
                if len(picked) >= k:
                    break
        return picked
