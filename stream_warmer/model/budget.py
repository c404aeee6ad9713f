"""Online warm budget: keep the strategy's effective warms at or below the better baseline's.

The trained threshold is only a starting point: the share of warms that are
*effective* (the key was not already cached) drifts with the workload. The controller
replays three shadow object-count LRU caches of the warmed cache's capacity (told by
the evaluator or serve's ``model.cache_capacity``; no fraction is assumed) — one fed
by this strategy's warms, one by the Markov successors', one by the next keys' (the
top k of each, k as many as the strategy may warm per request) — and
nudges the threshold (dual ascent) so that the smoothed effective warm rate stays
within ``1 - margin`` of the baseline whose shadow hit ratio is higher. Which baseline
is better is judged on a long horizon (``base_halflife`` requests): judged on the
short one of the rates it flips with phases, and the budget then follows the more
generous baseline in its good phases (measured: cloudphysics_vm f=0.1 ran 5% over
markov1's warms). Nothing here is fitted to a trace; it only measures the stream.

One way to drive it, in serve and in the evaluator alike: ``request`` per observed
access (the shadows, the rates and the threshold move), then ``warm`` with the warms
issued at the threshold it left; our effective warms since the last request are folded
into the rates at the next one. Serve predicts once per micro-batch, so all of its
requests come first; the evaluator predicts after every request.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream_warmer.lru import LruSim

Pair = tuple[str, str]


class WarmBudget:
    """Threshold controller (see the module docstring)."""

    def __init__(self, threshold: float, capacity: int, margin: float, *,
                 lr: float = 2e-3, halflife: int = 2000, base_halflife: int = 50_000) -> None:
        self.threshold = threshold
        self._capacity = max(1, int(capacity))
        self.margin = margin
        self.lr = lr
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife)
        self.base_alpha = 1.0 - 0.5 ** (1.0 / base_halflife)
        # ours, markov, nextkey: uncounted (the rates below are the controller's own)
        self._shadows = (LruSim(self._capacity), LruSim(self._capacity), LruSim(self._capacity))
        self.warm_rate = [0.0, 0.0, 0.0]
        self.hit_rate = [0.0, 0.0, 0.0]
        self.base_hit_rate = [0.0, 0.0, 0.0]  # long horizon: picks the better baseline
        self._ours = 0  # our effective warms since the last rate update
        self._pending: tuple[list[bool], list[int]] | None = None

    @property
    def capacity(self) -> int:
        """The warmed cache's capacity, in objects: the shadows' size."""
        return self._capacity

    @capacity.setter
    def capacity(self, capacity: int) -> None:
        self._capacity = max(1, int(capacity))
        for shadow in self._shadows:
            shadow.capacity = self._capacity

    def adopt(self, other: WarmBudget) -> None:
        """Take over ``other``'s shadow caches and rates (a hot swap); keep our threshold
        and our capacity."""
        self._shadows = other._shadows
        self.capacity = self._capacity
        self.warm_rate, self.hit_rate = other.warm_rate, other.hit_rate
        self.base_hit_rate = other.base_hit_rate

    def request(self, pair: Pair, markov: Sequence[str], nextkey: Sequence[str]) -> None:
        """Account one observed request; rates and threshold move here."""
        self._request(pair, markov, nextkey)
        self._update()

    def warm(self, tenant: str, keys: list[str]) -> None:
        """Our warms of ``tenant``'s ``keys``, issued after the latest request."""
        ours = self._shadows[0]
        self._ours += sum(ours.warm((tenant, key), False) for key in keys)

    def _request(self, pair: Pair, markov: Sequence[str], nextkey: Sequence[str]) -> None:
        """The request in every shadow, then each baseline's warms (its top k keys)."""
        tenant = pair[0]
        hits = [shadow.request(pair, False) for shadow in self._shadows]
        mk, nk = self._shadows[1], self._shadows[2]
        effs = [0, sum(mk.warm((tenant, key), False) for key in markov),
                sum(nk.warm((tenant, key), False) for key in nextkey)]
        self._pending = (hits, effs)

    def _update(self) -> None:
        if self._pending is None:
            return
        hits, effs = self._pending
        effs[0], self._ours, self._pending = self._ours, 0, None
        a = self.alpha
        b = self.base_alpha
        for i in range(3):
            self.hit_rate[i] += a * (hits[i] - self.hit_rate[i])
            self.base_hit_rate[i] += b * (hits[i] - self.base_hit_rate[i])
            self.warm_rate[i] += a * (effs[i] - self.warm_rate[i])
        base = 1 if self.base_hit_rate[1] >= self.base_hit_rate[2] else 2
        gap = self.warm_rate[0] - (1.0 - self.margin) * self.warm_rate[base]
        self.threshold = ascend(self.threshold, self.lr, gap)


def ascend(threshold: float, lr: float, gap: float, *, top: float = 1.0) -> float:
    """One dual-ascent step of a warm threshold: up by ``lr`` x ``gap`` (warming more
    than the target raises it), within [0, ``top``]. The budget here and the
    evaluator's iso-warm gate (``evaluation.rows.WarmRateGate``) both move this way."""
    return min(top, max(0.0, threshold + lr * gap))
