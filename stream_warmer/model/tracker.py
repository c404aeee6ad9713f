"""Online per-tenant state that turns each access into model inputs and candidates.

``CandidateTracker.step(event)`` updates the tenant's successor table with the
transition (previous key -> this key), then returns a ``Step``: the categorical ids,
which classes were correct for this key at the previous step (``correct``, a bitmask;
also the previous step's training target), which classes have a candidate now
(``present``), and the candidate key of each class (None where absent). The same code
runs in training and in serving, so features never drift between the two.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import (
    OPS,
    TENANT_BUCKETS,
    FeatureSpec,
    Key,
    parse_key,
    signed_log_bucket,
)


@dataclass(slots=True)
class _Tenant:
    succ: dict[Key, dict[Key, int]] = field(default_factory=dict)
    key: Key | None = None
    ts: int = 0
    delta: int = 0
    cands: list[Key | None] = field(default_factory=list)
    bucket: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """Model inputs and candidates of one access."""

    cats: tuple[int, ...]
    correct: int
    present: int
    cands: list[Key | None]


class CandidateTracker:
    """Per-tenant successor tables and last-step state, bounded per tenant."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._t: dict[str, _Tenant] = {}
        self._off = [int(x) for x in spec.cat_offsets]
        self._gap = list(spec.gap_edges)
        self._size = list(spec.size_edges)

    def forget(self, tenant: str) -> None:
        """Drop a tenant's state."""
        self._t.pop(tenant, None)

    def __len__(self) -> int:
        return len(self._t)

    def seed(self, tenant: str, table: Iterable[tuple[str, Mapping[str, int]]]) -> None:
        """Add successor counts learnt elsewhere (e.g. the Markov baseline) to ``tenant``.

        ``table`` yields (key, {successor: count}), oldest first; the bounds of the spec
        hold (the newest keys and, per key, the most frequent successors are kept). The
        tenant's last key is not set, so its next access starts a fresh transition.
        """
        st = self._t.get(tenant)
        if st is None:
            st = self._t[tenant] = _Tenant(bucket=zlib.crc32(tenant.encode()) % TENANT_BUCKETS)
        rows = list(table)[-self.spec.max_keys_per_tenant :]
        for prev, counts in rows:
            merged = st.succ.pop(parse_key(prev), {})
            for key, n in counts.items():
                k = parse_key(key)
                merged[k] = merged.get(k, 0) + int(n)
            top = sorted(merged.items(), key=lambda kv: -kv[1])[: self.spec.max_successors]
            st.succ[parse_key(prev)] = dict(top)
            if len(st.succ) > self.spec.max_keys_per_tenant:
                del st.succ[next(iter(st.succ))]

    def step(self, ev: AccessEvent) -> Step:
        """Observe one access and return its inputs and candidates."""
        st = self._t.get(ev.tenant)
        if st is None:
            bucket = zlib.crc32(ev.tenant.encode()) % TENANT_BUCKETS
            st = self._t[ev.tenant] = _Tenant(bucket=bucket)
        key = parse_key(ev.key)
        correct = 0
        for i, cand in enumerate(st.cands):
            if cand == key:
                correct |= 1 << i
        if st.cands and not correct:
            correct = 1  # NO-WARM was the right call
        delta_id = 0
        if st.key is not None:
            self._learn(st, st.key, key)
            if isinstance(key, int) and isinstance(st.key, int):
                delta_id = signed_log_bucket(key - st.key)
                st.delta = key - st.key
        gap = ev.ts - st.ts if st.key is not None else -1
        succ = st.succ.get(key)
        cands = self._candidates(st, key, ev.size or 1, succ)
        present = 0
        for i, cand in enumerate(cands):
            if cand is not None:
                present |= 1 << i
        cats = self._cats(ev, st, delta_id, gap, succ=succ, key=key)
        st.key, st.ts, st.cands = key, ev.ts, cands
        return Step(cats, correct, present, cands)

    def _learn(self, st: _Tenant, prev: Key, key: Key) -> None:
        succ = st.succ.get(prev)
        if succ is None:
            if len(st.succ) >= self.spec.max_keys_per_tenant:
                del st.succ[next(iter(st.succ))]  # oldest-inserted key goes first
            succ = st.succ[prev] = {}
        if key in succ:
            succ[key] += 1
        elif len(succ) < self.spec.max_successors:
            succ[key] = 1
        else:  # replace the least frequent (latest among ties) successor
            worst = min(reversed(succ.items()), key=lambda kv: kv[1])[0]
            del succ[worst]
            succ[key] = 1

    def _candidates(self, st: _Tenant, key: Key, size: int,
                    succ: dict[Key, int] | None) -> list[Key | None]:
        spec = self.spec
        cands: list[Key | None] = [None] * spec.n_classes
        if succ:
            ranked = sorted(succ.items(), key=lambda kv: -kv[1])  # stable: first seen first
            for r in range(min(spec.ranks, len(ranked))):
                cands[1 + r] = ranked[r][0]
        if isinstance(key, int):
            base = 1 + spec.ranks
            cands[base] = key + max(1, size // spec.size_unit)
            if st.delta:
                cands[base + 1] = key + st.delta
            for j, d in enumerate(spec.deltas):
                cands[base + 2 + j] = key + d
        return cands

    def _cats(self, ev: AccessEvent, st: _Tenant, delta_id: int, gap: int, *,
              succ: dict[Key, int] | None, key: Key) -> tuple[int, ...]:
        top = max(succ.values()) if succ else 0
        gap_id = 0 if gap < 0 else 1 + bisect.bisect_left(self._gap, math.log1p(gap))
        size_id = 0 if ev.size is None else 1 + bisect.bisect_left(
            self._size, math.log1p(ev.size))
        o = self._off
        return (o[0] + delta_id, o[1] + min(top.bit_length(), 15),
                o[2] + (len(succ) if succ else 0), o[3] + OPS.get(ev.op, 0),
                o[4] + gap_id, o[5] + size_id, o[6] + st.bucket,
                o[7] + int(key in st.succ))
