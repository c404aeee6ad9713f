"""From class probabilities and candidates to one warm per step; the validation replay.

Classes that name the same key pool their probability; the pooled sum is the
confidence (native code: ``stream_warmer_native.Cands.choose``). ``lru_replay`` is
the DESIGN §5 protocol on a slice (object-count LRU, effective warms), used by
training to choose the confidence threshold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from stream_warmer_native import Cands

from stream_warmer.model.features import Key


def choose(probs: npt.NDArray[np.float32] | Sequence[list[float]],
           cands: Cands | Sequence[Sequence[Key | None]], k: int = 1
           ) -> list[list[tuple[Key, float]]]:
    """Per row: up to ``k`` (key, pooled probability), best first (class 0 is NO-WARM).

    ``probs`` is (B, C) float32 (rows of floats are taken as float32); ``cands`` a
    ``Cands`` from the tracker or lists of keys. Ties go to the key whose first class
    comes first (a stable order). The pooling is the tracker's native code.
    """
    arr = np.ascontiguousarray(probs, dtype=np.float32)
    if arr.ndim != 2:
        arr = arr.reshape(len(arr), -1)
    if not isinstance(cands, Cands):
        cands = Cands.from_lists(cands, arr.shape[1])
    out: list[list[tuple[Key, float]]] = cands.choose(arr.tobytes(), k)
    return out


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
