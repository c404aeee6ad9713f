"""From class probabilities and candidates to one warm per step.

Classes that name the same key pool their probability; the pooled sum is the
confidence (native code: ``stream_warmer_native.Cands.choose``).
"""

from __future__ import annotations

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


