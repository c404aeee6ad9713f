"""Choosing the confidence threshold on the training data's own validation slice.

The model scores every validation step (streaming over each tenant's steps from a
burn-in point); the LRU protocol is replayed for a grid of thresholds and for the two
baselines (Markov successor, next key) on the same slice; the threshold with the best
hit ratio whose warms per request stay within the larger of the baselines' (less a
margin) wins. (Within the *better* baseline's, as it was, starved the model at a delay:
there the better one can be a Markov that warms 0.03 per request.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import torch

from stream_warmer.events import AccessEvent
from stream_warmer.lru import replay
from stream_warmer.model.dataset import Encoded, expand_bits, tenant_sequences
from stream_warmer.model.decode import choose
from stream_warmer.model.features import Key, parse_key
from stream_warmer.model.net import WarmNet
from stream_warmer.settings import TrainerSettings
from stream_warmer.strategies.baselines import next_keys

Warm = tuple[str, Key] | None


def score_steps(model: WarmNet, enc: Encoded, chunk: int = 4096) -> npt.NDArray[np.float32]:
    """Class probabilities (N - keep_from, C) of the kept steps, streamed per tenant."""
    out = np.zeros((len(enc.tenant) - enc.keep_from, model.config.n_classes), dtype=np.float32)
    n_classes = model.config.n_classes
    model.eval()
    with torch.inference_mode():
        for full in tenant_sequences(enc):
            seq = full[full >= enc.keep_from]
            state = None
            for start in range(0, len(seq), chunk):
                idx = torch.from_numpy(seq[start : start + chunk])  # (T,)
                bits = expand_bits(torch.from_numpy(enc.correct)[idx],
                                   torch.from_numpy(enc.present)[idx], n_classes)  # (T, 2C)
                cats = torch.from_numpy(enc.cats)[idx]  # (T, K)
                logits, state = model.forward_seq(cats[None], bits[None], state)  # (1, T, C)
                out[idx.numpy() - enc.keep_from] = torch.softmax(logits[0], -1).numpy()
    return out


def choose_threshold(model: WarmNet, enc: Encoded, events: Sequence[AccessEvent], split: int,
                     trainer: TrainerSettings, *, delay: int = 0
                     ) -> tuple[float, dict[str, float]]:
    """(threshold, validation metrics); see the module docstring."""
    kept = events[enc.keep_from :]
    if split >= len(events) or not kept:
        return 0.0, {}
    picks = choose(score_steps(model, enc), enc.cands, k=1)
    pairs = [(ev.tenant, parse_key(ev.key)) for ev in kept]
    capacity = max(1, int(trainer.val_cache_frac * len(set(
        (ev.tenant, ev.key) for ev in events))))
    count_from = split - enc.keep_from
    base = _baselines(kept, pairs, enc.cands, capacity=capacity, count_from=count_from,
                      delay=delay)
    budget = max(base[2] * (1.0 - trainer.warm_budget_margin), 0.0)
    scores = np.array([p[0][1] if p else 0.0 for p in picks[count_from:]])
    grid = np.unique(np.quantile(scores, np.linspace(0.0, 0.98, 25))) if len(scores) else [0.0]
    best = (-1.0, 1.0, 0.0)  # (hit, wpr, threshold)
    for thr in grid:
        warms: list[Warm] = [(t, p[0][0]) if p and p[0][1] >= thr else None
                             for (t, _), p in zip(pairs, picks, strict=True)]
        hit, wpr = replay(pairs, warms, capacity, count_from, delay)
        if wpr <= budget and hit > best[0]:
            best = (hit, wpr, float(thr))
    if best[0] < 0:  # nothing fits the budget: warm only the surest predictions
        best = (float("nan"), 0.0, float(scores.max(initial=0.0)) + 1e-6)
    return best[2], {"val_hit": best[0], "val_wpr": best[1], "threshold": best[2],
                     "val_base_hit": base[0], "val_base_wpr": base[1], "val_cap_wpr": base[2],
                     "val_capacity": float(capacity)}


def _baselines(events: Sequence[AccessEvent], pairs: list[tuple[str, Key]],
               cands: Iterable[list[Key | None]], *, capacity: int, count_from: int,
               delay: int) -> tuple[float, float, float]:
    """(hit, wpr) of the better of markov and nextkey at k=1 on the slice, and the larger
    of their wpr: markov's
    warm is the tracker's rank-1 candidate (the same successor tables, native/src/
    table.rs), nextkey's the baseline's own ``next_keys``."""
    markov: list[Warm] = [(t, c[1]) if c[1] is not None else None
                          for (t, _), c in zip(pairs, cands, strict=True)]
    nextkey: list[Warm] = [(ev.tenant, parse_key(nk[0].key)) if (nk := next_keys(ev.key, 1))
                           else None for ev in events]
    results = [replay(pairs, w, capacity, count_from, delay) for w in (markov, nextkey)]
    hit, wpr = max(results, key=lambda r: r[0])
    return hit, wpr, max(r[1] for r in results)
