"""Choosing the confidence threshold on the training data's own validation slice.

The model scores every validation step (streaming over each tenant's steps from a
burn-in point); the LRU protocol is replayed for a grid of thresholds and for three
baselines on the same slice (Markov successor, next key, and PG, which at a delay
often spends the most: up to one key its presence shadow lacks per request); the
threshold with the best hit ratio whose warms per request stay within the largest of
the baselines' (less a margin) wins. (Within the *better* baseline's, as it was,
starved the model at a delay: there the better one can be a Markov that warms 0.03
per request.)

With the presence filter (``presence`` > 0 candidates, ``model.presence_filter``) the
replay picks as serve will: per step, of the top ``presence`` keys scoring at least the
threshold, the first one a shadow of the cache does not hold (the evaluator's
``PresenceThreshold``). Fitted on the top key alone, as before, it was chosen for a
strategy that names keys the cache already has, not for the one served.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

import numpy as np
import numpy.typing as npt
import torch

from stream_warmer.evaluation.rows import PresenceThreshold
from stream_warmer.events import AccessEvent
from stream_warmer.lru import LruSim, replay
from stream_warmer.model.dataset import Encoded, expand_bits, tenant_sequences
from stream_warmer.model.decode import choose
from stream_warmer.model.features import Key, parse_key
from stream_warmer.model.net import WarmNet
from stream_warmer.settings import StrategySettings, TrainerSettings
from stream_warmer.strategies import build_baseline
from stream_warmer.strategies.baselines import next_keys
from stream_warmer.strategies.presence import Presence

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
                     trainer: TrainerSettings, *, strategy: StrategySettings, delay: int = 0,
                     presence: int = 0) -> tuple[float, dict[str, float]]:
    """(threshold, validation metrics); see the module docstring."""
    kept = events[enc.keep_from :]
    if split >= len(events) or not kept:
        return 0.0, {}
    probs = score_steps(model, enc)
    # per step, best first: the presence filter's top ``presence`` keys, else the top key
    named = enc.cands.choose(probs.tobytes(), presence, as_str=True) if presence else None
    picks = named if named is not None else choose(probs, enc.cands, k=1)
    pairs = [(ev.tenant, parse_key(ev.key)) for ev in kept]
    capacity = max(1, int(trainer.val_cache_frac * len(set(
        (ev.tenant, ev.key) for ev in events))))
    count_from = split - enc.keep_from
    base = _baselines(events, enc.keep_from, pairs, enc.cands, strategy, capacity=capacity,
                      count_from=count_from, delay=delay)
    budget = max(base[2] * (1.0 - trainer.warm_budget_margin), 0.0)
    scores = np.array([p[0][1] if p else 0.0 for p in picks[count_from:]])
    grid = np.unique(np.quantile(scores, np.linspace(0.0, 0.98, 25))) if len(scores) else [0.0]
    best = (-1.0, 1.0, 0.0)  # (hit, wpr, threshold)
    for thr in grid:
        if named is not None:
            hit, wpr = _replay_presence(kept, named, float(thr), capacity=capacity,
                                        count_from=count_from, delay=delay)
        else:
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


def _replay_presence(events: Sequence[AccessEvent], named: list[list[tuple[str, float]]],
                     threshold: float, *, capacity: int, count_from: int, delay: int
                     ) -> tuple[float, float]:
    """(hit ratio, effective warms per request) of ``replay`` for the presence filter at
    ``threshold``: each step's warm is the first of its ``named`` keys (best first)
    scoring at least it that a shadow of the cache does not hold (module docstring)."""
    sim = LruSim(capacity, delay)
    gate = PresenceThreshold(threshold, 1, Presence(capacity))
    for i, (ev, keys) in enumerate(zip(events, named, strict=True)):
        tenant = ev.tenant
        gate.step(sim, (tenant, ev.key), [((tenant, key), score) for key, score in keys],
                  i >= count_from)
    n = max(1, len(events) - count_from)
    return sim.hits / n, sim.warms / n


def _baselines(events: Sequence[AccessEvent], keep_from: int, pairs: list[tuple[str, Key]],
               cands: Iterable[list[Key | None]], strategy: StrategySettings, *, capacity: int,
               count_from: int, delay: int) -> tuple[float, float, float]:
    """(hit, wpr) of the best of markov, nextkey and pg at k=1 on the slice
    ``events[keep_from:]`` (whose ``pairs`` and tracker ``cands`` are given), and the
    largest of their wpr: markov's warm is the tracker's rank-1 candidate (the same
    successor tables, native/src/table.rs), nextkey's the baseline's own ``next_keys``,
    pg's the served peer's (``strategy``'s bounds, a presence shadow of ``capacity``),
    which learns from the first event on, as the tracker does."""
    kept = events[keep_from:]
    markov: list[Warm] = [(t, c[1]) if c[1] is not None else None
                          for (t, _), c in zip(pairs, cands, strict=True)]
    nextkey: list[Warm] = [(ev.tenant, parse_key(nk[0].key)) if (nk := next_keys(ev.key, 1))
                           else None for ev in kept]
    pg = build_baseline("pg", strategy)
    pg.set_cache_capacity(capacity)
    named = list(islice(pg.predict_stream(events, 1), keep_from, None))
    pgw: list[Warm] = [(ev.tenant, parse_key(p[0].key)) if p else None
                       for ev, p in zip(kept, named, strict=True)]
    results = [replay(pairs, w, capacity, count_from, delay) for w in (markov, nextkey, pgw)]
    hit, wpr = max(results, key=lambda r: r[0])
    return hit, wpr, max(r[1] for r in results)
