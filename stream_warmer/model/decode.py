"""From class probabilities and candidates to one warm per step; the validation replay.

Classes that name the same key pool their probability; the pooled sum is the
confidence. ``lru_replay`` is the DESIGN §5 protocol on a slice (object-count LRU,
effective warms), used by training to choose the confidence threshold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stream_warmer.model.features import Key


def choose(probs: npt.NDArray[np.float32] | Sequence[list[float]],
           cands: Sequence[Sequence[Key | None]], k: int = 1) -> list[list[tuple[Key, float]]]:
    """Per row: up to ``k`` (key, pooled probability), best first (class 0 is NO-WARM).

    ``probs`` is (B, C), an array or rows of floats. Ties go to the key whose first
    class comes first (a stable order).
    """
    rows = probs.tolist() if isinstance(probs, np.ndarray) else probs
    return [_pooled_top(row, cand, k) for row, cand in zip(rows, cands, strict=True)]


def _pooled_top(row: list[float], cand: Sequence[Key | None], k: int
                ) -> list[tuple[Key, float]]:
    pooled: dict[Key, float] = {}
    for key, p in zip(cand, row):  # noqa: B905 - a row may be longer than its cands
        if key is not None:
            pooled[key] = pooled.get(key, 0.0) + p
    if not pooled:
        return []
    if k == 1:  # max keeps the first of equal scores, like the stable sort
        best = max(pooled, key=pooled.__getitem__)
        return [(best, pooled[best])]
    return sorted(pooled.items(), key=_neg_score)[:k]


def _neg_score(kv: tuple[Key, float]) -> float:
    return -kv[1]


def lru_replay(pairs: Sequence[tuple[str, Key]], warms: Sequence[tuple[str, Key] | None],
               capacity: int, count_from: int) -> tuple[float, float]:
    """(hit ratio, effective warms per request) over requests from ``count_from``."""
    cache: OrderedDict[tuple[str, Key], None] = OrderedDict()
    hits = n_warms = 0
    for i, (pair, warm) in enumerate(zip(pairs, warms, strict=True)):
        counted = i >= count_from
        if pair in cache:
            cache.move_to_end(pair)
            hits += counted
        else:
            cache[pair] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
        if warm is not None and warm not in cache:
            cache[warm] = None
            n_warms += counted
            if len(cache) > capacity:
                cache.popitem(last=False)
    n = max(1, len(pairs) - count_from)
    return hits / n, n_warms / n
