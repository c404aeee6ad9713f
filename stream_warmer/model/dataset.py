"""Per-step arrays of a training stream, and windows cut from it for the LSTM.

``encode_stream`` runs the ``CandidateTracker`` over events in order and keeps compact
arrays (categorical ids, bitmasks); bits are expanded only per mini-batch. Targets:
the classes whose candidate the tenant asks for within ``horizon`` requests once a
warm named now would land, ``lead`` requests of the stream later (with 0 and 1: the
classes that named its *next* key, its next ``correct`` mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.tracker import CandidateTracker, Cands

I64 = npt.NDArray[np.int64]


@dataclass
class Encoded:
    """Arrays of N steps in stream order; ``cands`` kept only from ``keep_from`` on."""

    cats: I64  # (N, K)
    correct: I64  # (N,) bitmask of classes right at the previous step of the tenant
    present: I64  # (N,) bitmask of classes with a candidate
    target: I64  # (N,) bitmask of classes right for the next step (-1: none known)
    tenant: I64  # (N,) dense tenant index
    cands: Cands  # (N - keep_from) lists of C candidates
    keep_from: int


def encode_stream(events: Sequence[AccessEvent], spec: FeatureSpec, keep_from: int, *,
                  lead: int = 0, horizon: int = 1) -> Encoded:
    """Track ``events`` from an empty state; keep candidate lists from ``keep_from``."""
    cats, correct, present, target, tenant, cands = CandidateTracker(spec).encode(
        events, keep_from, lead=lead, horizon=horizon)
    return Encoded(cats, correct, present, target, tenant, cands, keep_from)


def expand_bits(correct: torch.Tensor, present: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(..., ) bitmasks -> (..., 2C) float bits."""
    shifts = torch.arange(n_classes, device=correct.device)  # (C,)
    c = (correct[..., None] >> shifts) & 1  # (..., C)
    p = (present[..., None] >> shifts) & 1  # (..., C)
    return torch.cat([c, p], dim=-1).float()  # (..., 2C)


def tenant_sequences(enc: Encoded) -> list[I64]:
    """Indices of each tenant's steps, in order."""
    order = np.argsort(enc.tenant, kind="stable")
    bounds = np.flatnonzero(np.diff(enc.tenant[order])) + 1
    return [np.asarray(s, dtype=np.int64) for s in np.split(order, bounds)]


def windows(seqs: list[I64], length: int, split: int) -> tuple[list[I64], list[I64]]:
    """Cut sequences into windows; (train, validation) by time (first index vs ``split``)."""
    train: list[I64] = []
    val: list[I64] = []
    for seq in seqs:
        for start in range(0, len(seq) - 1, length):
            win = seq[start : start + length]
            if len(win) < 2:
                continue
            if win[-1] < split:
                train.append(win)
            elif win[0] >= split:
                val.append(win)
    return train, val


def batch(enc: Encoded, wins: Sequence[I64], n_classes: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors of a list of windows."""
    t = max(len(w) for w in wins)
    idx = np.zeros((len(wins), t), dtype=np.int64)
    valid = np.zeros((len(wins), t), dtype=bool)
    for r, w in enumerate(wins):
        idx[r, : len(w)] = w
        valid[r, : len(w)] = True
    target = enc.target[idx]  # (B, T)
    valid &= target > 0
    ti = torch.from_numpy(idx)
    shifts = torch.arange(n_classes)
    tgt = (torch.from_numpy(np.maximum(target, 0))[..., None] >> shifts) & 1  # (B, T, C)
    return {
        "cats": torch.from_numpy(enc.cats)[ti],  # (B, T, K)
        "bits": expand_bits(torch.from_numpy(enc.correct)[ti], torch.from_numpy(enc.present)[ti],
                            n_classes),  # (B, T, 2C)
        "target": tgt.bool(),  # (B, T, C)
        "valid": torch.from_numpy(valid),  # (B, T)
    }
