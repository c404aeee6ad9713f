"""The Python reference of the candidate tracker and the pooled decode (a test oracle).

This was the product's implementation until the hot path moved to Rust
(native/src/lib.rs, wrapped by ``stream_warmer.model.tracker``); it stays here,
unchanged in behaviour but one (a full table now drops its least recently used key,
as the ``markov`` baseline always did, where it dropped the oldest inserted), so the
tests can hold the native code to the same semantics (tests/unit/test_native_tracker.py,
tests/unit/test_baselines.py). Nothing in the package imports it.

Memory budget (native/src/table.rs): every table of one tracker (one ``ReferenceMarkov``)
is charged ``row_bytes`` per row, recomputed here from the rows (the native code keeps
the sum incrementally); once a step has learnt, the least recently used rows of all
tenants' tables go while the sum exceeds the budget. ``_Budget`` keeps that order.
"""

from __future__ import annotations

import bisect
import math
import zlib
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from stream_warmer_native import TABLE_ROW_BYTES, TABLE_SUCC_BYTES

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import (
    OPS,
    TENANT_BUCKETS,
    FeatureSpec,
    Key,
    parse_key,
    signed_log_bucket,
)
from stream_warmer.model.tracker import Step
from stream_warmer.strategies.base import Prediction


def row_bytes(key: Key, succ: Iterable[Key]) -> int:
    """What a row is charged: a fixed part, its key's string twice, and per successor
    a fixed part and its string (parsed integer keys have none)."""
    return (TABLE_ROW_BYTES + 2 * _key_bytes(key)
            + sum(TABLE_SUCC_BYTES + _key_bytes(s) for s in succ))


def _key_bytes(key: Key) -> int:
    if isinstance(key, str) and isinstance(parse_key(key), str):
        return len(key.encode())
    return 0


class _Budget:
    """Tables under one byte budget, and the recency order of all their rows."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.tables: dict[int, dict[Any, Any]] = {}  # table id -> {key: successors}
        self.lru: OrderedDict[tuple[int, Any], None] = OrderedDict()  # oldest first
        self.evictions = 0

    def add(self, table: dict[Any, Any]) -> None:
        self.tables[id(table)] = table

    def drop(self, table: dict[Any, Any]) -> None:
        del self.tables[id(table)]
        for entry in [e for e in self.lru if e[0] == id(table)]:
            del self.lru[entry]

    def touch(self, table: dict[Any, Any], key: Any) -> None:
        self.lru.pop((id(table), key), None)
        self.lru[(id(table), key)] = None

    def evicted(self, table: dict[Any, Any], key: Any) -> None:
        """``key``'s row went by the per-tenant cap."""
        del self.lru[(id(table), key)]
        self.evictions += 1

    def bytes(self) -> int:
        return sum(row_bytes(k, getattr(succ, "counts", succ))  # a _Successors or a dict
                   for t in self.tables.values() for k, succ in t.items())

    def fit(self) -> None:
        while self.bytes() > self.budget:
            (table, key), _ = self.lru.popitem(last=False)
            del self.tables[table][key]
            self.evictions += 1

    def stats(self) -> tuple[int, int, int, int]:
        rows = sum(len(t) for t in self.tables.values())
        return self.bytes(), rows, self.evictions, self.budget


@dataclass(slots=True)
class _Tenant:
    succ: dict[Key, dict[Key, int]] = field(default_factory=dict)
    key: Key | None = None
    ts: int = 0
    delta: int = 0
    cands: list[Key | None] = field(default_factory=list)
    bucket: int = 0
    # the tenant's places not yet out of the window: [key, stream index, requests
    # counted against it since it became active]
    recent: list[list[Any]] = field(default_factory=list)
    ahead: dict[Key, dict[Key, int]] = field(default_factory=dict)  # window table


class ReferenceTracker:
    """Per-tenant successor tables and last-step state, bounded per tenant and all
    together (``spec.table_bytes``)."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._t: dict[str, _Tenant] = {}
        self._budget = _Budget(spec.table_bytes)
        self._steps = 0  # steps so far: the next step's index in the stream
        self._off = [int(x) for x in spec.cat_offsets]
        self._gap = list(spec.gap_edges)
        self._size = list(spec.size_edges)
        base = 1 + spec.ranks  # the size stride and every fixed delta exist for int keys
        self._int_bits = (1 << base) | (((1 << len(spec.deltas)) - 1) << (base + 2))
        self._last_bit = 1 << (base + 1)
        self._ranks, self._unit, self._deltas = spec.ranks, spec.size_unit, spec.deltas
        self._no_ranks: list[Key | None] = [None] * spec.ranks
        self._no_ints: list[Key | None] = [None] * (2 + len(spec.deltas))

    def forget(self, tenant: str) -> None:
        """Drop a tenant's state."""
        st = self._t.pop(tenant, None)
        if st is not None:
            self._budget.drop(st.succ)
            self._budget.drop(st.ahead)

    def __len__(self) -> int:
        return len(self._t)

    def table_stats(self) -> tuple[int, int, int, int]:
        """(bytes charged, rows, rows evicted by a bound, the budget)."""
        return self._budget.stats()

    def table_len(self, tenant: str) -> int:
        """Keys in ``tenant``'s successor table."""
        st = self._t.get(tenant)
        return len(st.succ) if st is not None else 0

    def _tenant(self, tenant: str) -> _Tenant:
        st = self._t.get(tenant)
        if st is None:
            st = self._t[tenant] = _Tenant(bucket=zlib.crc32(tenant.encode()) % TENANT_BUCKETS)
            self._budget.add(st.succ)
            self._budget.add(st.ahead)
        return st

    def seed(self, tenant: str, table: Iterable[tuple[str, Mapping[str, int]]]) -> None:
        """Add successor counts learnt elsewhere (e.g. the Markov baseline) to ``tenant``.

        ``table`` yields (key, {successor: count}), oldest first; the bounds of the spec
        hold (the newest keys and, per key, the most frequent successors are kept). The
        tenant's last key is not set, so its next access starts a fresh transition.
        """
        st = self._tenant(tenant)
        rows = list(table)[-self.spec.max_keys_per_tenant :]
        for prev, counts in rows:
            merged = st.succ.pop(parse_key(prev), {})
            for key, n in counts.items():
                k = parse_key(key)
                merged[k] = merged.get(k, 0) + int(n)
            top = sorted(merged.items(), key=lambda kv: -kv[1])[: self.spec.max_successors]
            st.succ[parse_key(prev)] = dict(top)
            self._budget.touch(st.succ, parse_key(prev))
            if len(st.succ) > self.spec.max_keys_per_tenant:
                gone = next(iter(st.succ))
                del st.succ[gone]
                self._budget.evicted(st.succ, gone)
            self._budget.fit()

    def top_successors(self, tenant: str, key: Key, k: int) -> list[Key]:
        """The ``k`` most frequent successors of ``key`` seen for ``tenant`` (first seen
        first among equal counts), as the candidate ranks order them."""
        st = self._t.get(tenant)
        succ = st.succ.get(key) if st is not None else None
        if not succ:
            return []
        return [kv[0] for kv in sorted(succ.items(), key=itemgetter(1), reverse=True)[:k]]

    def step(self, ev: AccessEvent) -> Step:
        """Observe one access and return its inputs and candidates (the serve hot path)."""
        st = self._tenant(ev.tenant)
        key = parse_key(ev.key)
        correct = 0
        if st.cands:
            correct = _match_bits(st.cands, key) if key in st.cands else 1  # 1: NO-WARM
        prev, delta_id, gap = st.key, 0, -1
        if prev is not None:
            self._learn(st.succ, prev, key)
            gap = ev.ts - st.ts
            if isinstance(key, int) and isinstance(prev, int):
                st.delta = key - prev
                delta_id = signed_log_bucket(st.delta)
        self._observe_ahead(st, key)
        self._budget.fit()  # once the step has learnt (may evict this tenant's rows)
        succ = st.succ.get(key)
        cands, present = self._candidates(st, key, ev.size or 1, succ)
        cands, present = self._ahead_candidates(st, key, cands, present)
        o = self._off
        size = ev.size
        cats = (o[0] + delta_id,
                o[1] + (min(max(succ.values()).bit_length(), 15) if succ else 0),
                o[2] + (len(succ) if succ else 0), o[3] + OPS.get(ev.op, 0),
                o[4] + (0 if gap < 0 else 1 + bisect.bisect_left(self._gap, math.log1p(gap))),
                o[5] + (0 if size is None else
                        1 + bisect.bisect_left(self._size, math.log1p(size))),
                o[6] + st.bucket, o[7] + int(key in st.succ))
        st.key, st.ts, st.cands = key, ev.ts, cands
        return Step(cats, correct, present, cands)

    def _observe_ahead(self, st: _Tenant, key: Key) -> None:
        """The window table: each place active (a warm named there would have landed:
        the stream has moved on more than ``ahead_lead`` steps) counts ``key`` unless
        it is ``key`` or a newer active place has its key, for the tenant's next
        ``ahead_window`` requests once active (oldest first)."""
        window, lead, index = self.spec.ahead_window, self.spec.ahead_lead, self._steps
        self._steps += 1
        if not window:
            return
        active = [p for p in st.recent if index > p[1] + lead]
        for i, (prev, _, _) in enumerate(active):
            if prev != key and all(q[0] != prev for q in active[i + 1 :]):
                self._learn(st.ahead, prev, key, self.spec.ahead_successors
                            or self.spec.max_successors)
        for p in active:
            p[2] += 1
        st.recent = [*(p for p in st.recent if p[2] < window), [key, index, 0]]

    def _ahead_candidates(self, st: _Tenant, key: Key, cands: list[Key | None], present: int
                          ) -> tuple[list[Key | None], int]:
        """The AHEAD classes: the window table's top successors no class above names."""
        n = self.spec.ahead_ranks
        if not n:
            return cands, present
        first = len(cands)
        succ = st.ahead.get(key) or {}
        top = [kv[0] for kv in sorted(succ.items(), key=itemgetter(1), reverse=True)]
        out: list[Key | None] = list(cands)
        for s in top[: first + n]:
            if len(out) < first + n and s not in out:
                out.append(s)
        present |= ((1 << (len(out) - first)) - 1) << first
        return out + [None] * (first + n - len(out)), present

    def _learn(self, table: dict[Key, dict[Key, int]], prev: Key, key: Key,
               max_successors: int = 0) -> None:
        """One transition ``prev -> key``; at most ``max_successors`` per key (0: the
        spec's ``max_successors``; the window table has ``ahead_successors``)."""
        succ = table.pop(prev, None)  # reinserted: the dict's order is LRU first
        if succ is None:
            if len(table) >= self.spec.max_keys_per_tenant:
                gone = next(iter(table))  # the least recently used key goes first
                del table[gone]
                self._budget.evicted(table, gone)
            succ = {}
        table[prev] = succ
        self._budget.touch(table, prev)
        if key in succ:
            succ[key] += 1
        elif len(succ) < (max_successors or self.spec.max_successors):
            succ[key] = 1
        else:  # replace the least frequent (latest among ties) successor
            worst = min(reversed(succ.items()), key=lambda kv: kv[1])[0]
            del succ[worst]
            succ[key] = 1

    def _candidates(self, st: _Tenant, key: Key, size: int,
                    succ: dict[Key, int] | None) -> tuple[list[Key | None], int]:
        """The candidate key of each class (None where absent) and the ``present`` bits."""
        ranks, present = self._no_ranks, 0
        if succ:
            n = self._ranks
            if len(succ) == 1:
                ranks = [*succ, *self._no_ranks[1:]]
                present = 2
            else:  # stable: first seen first among equal counts
                top = [kv[0] for kv in sorted(succ.items(), key=itemgetter(1), reverse=True)[:n]]
                ranks = [*top, *self._no_ranks[len(top):]]
                present = ((1 << len(top)) - 1) << 1
        if not isinstance(key, int):
            return [None, *ranks, *self._no_ints], present
        delta = st.delta
        cands: list[Key | None] = [None, *ranks, key + max(1, size // self._unit),
                                   key + delta if delta else None,
                                   *[key + d for d in self._deltas]]
        return cands, present | self._int_bits | (self._last_bit if delta else 0)


def _match_bits(cands: list[Key | None], key: Key) -> int:
    """Bitmask of the classes whose candidate is ``key``."""
    bits, bit = 0, 1
    for cand in cands:
        if cand == key:
            bits |= bit
        bit <<= 1
    return bits


def reference_choose(rows: list[list[float]], cands: list[list[Key | None]], k: int
                     ) -> list[list[tuple[Key, float]]]:
    """Per row: up to ``k`` (key, pooled probability), best first (dict pooling)."""
    out = []
    for row, cand in zip(rows, cands, strict=True):
        pooled: dict[Key, float] = {}
        for key, p in zip(cand, row):  # noqa: B905 - a row may be longer than its cands
            if key is not None:
                pooled[key] = pooled.get(key, 0.0) + p
        if not pooled:
            out.append([])
        elif k == 1:
            best = max(pooled, key=pooled.__getitem__)
            out.append([(best, pooled[best])])
        else:
            out.append(sorted(pooled.items(), key=lambda kv: -kv[1])[:k])
    return out


class _Successors:
    """Successor counts of one key, kept ranked (count desc, then first seen)."""

    __slots__ = ("counts", "order", "seen", "total")

    def __init__(self) -> None:
        self.total = 0  # transitions seen out of this key, evicted successors included
        self.counts: dict[str, int] = {}
        self.seen: dict[str, int] = {}  # successor -> arrival number (tie break)
        self.order: list[str] = []  # successors, best first

    def add(self, key: str, max_successors: int) -> None:
        """Count one transition to ``key``; drop the lowest ranked one when full."""
        self.total += 1
        counts, order = self.counts, self.order
        count = counts.get(key)
        if count is None:
            if len(order) >= max_successors:
                victim = order.pop()
                del counts[victim], self.seen[victim]
            counts[key] = 1
            self.seen[key] = self.total
            order.append(key)  # count 1, seen last: ranks last
            return
        counts[key] = count + 1
        i = order.index(key)
        if not i:
            return
        seen = self.seen
        rank = (-count - 1, seen[key])  # ascending rank order = best first
        ahead = order[i - 1]
        if (-counts[ahead], seen[ahead]) > rank:  # it now outranks its predecessor
            j = bisect_left(order, rank, 0, i, key=lambda s: (-counts[s], seen[s]))
            del order[i]
            order.insert(j, key)


class ReferenceMarkov:
    """The ``markov`` baseline as it was in Python (stream_warmer/strategies/baselines.py
    until its tables moved to native/src/table.rs): the oracle of test_baselines.py.

    Ranking: count, ties broken by which successor was seen first. Memory is bounded:
    at most ``max_keys`` keys per tenant (least recently used dropped) and at most
    ``max_successors`` successors per key (the lowest ranked dropped for a new one).
    Score = count / all transitions seen out of x. The top k are a prefix of the
    top k+1 (``nested_k``), which lets the evaluator serve several k from one run.
    All tenants' tables are charged against ``table_bytes`` together (``_Budget``).
    """

    def __init__(self, max_keys: int = 50_000, max_successors: int = 8,
                 table_bytes: int = 1 << 62) -> None:
        if max_keys < 1 or max_successors < 1:
            msg = f"max_keys={max_keys} and max_successors={max_successors} must be >= 1"
            raise ValueError(msg)
        self._max_keys = max_keys
        self._max_succ = max_successors
        self._tables: dict[str, OrderedDict[str, _Successors]] = {}
        self._last: dict[str, str] = {}
        self._budget = _Budget(table_bytes)

    def table_stats(self) -> tuple[int, int, int, int]:
        """(bytes charged, rows, rows evicted by a bound, the budget)."""
        return self._budget.stats()

    def table_len(self, tenant: str) -> int:
        """Keys in ``tenant``'s table."""
        return len(self._tables.get(tenant, ()))

    def observe(self, event: AccessEvent) -> None:
        """Record the transition from the tenant's previous key to this one."""
        tenant, key = event.tenant, event.key
        prev = self._last.get(tenant)
        self._last[tenant] = key
        if prev is None:
            return
        table = self._tables.get(tenant)
        if table is None:
            table = self._tables[tenant] = OrderedDict()
            self._budget.add(table)
        succ = table.get(prev)
        if succ is None:
            succ = table[prev] = _Successors()
            if len(table) > self._max_keys:
                gone, _ = table.popitem(last=False)
                self._budget.evicted(table, gone)
        else:
            table.move_to_end(prev)
        self._budget.touch(table, prev)
        succ.add(key, self._max_succ)
        self._budget.fit()

    def _successors(self, tenant: str, key: str, k: int) -> list[Prediction]:
        table = self._tables.get(tenant)
        succ = table.get(key) if table is not None else None
        if succ is None:
            return []
        counts, total = succ.counts, succ.total
        return [Prediction(s, counts[s] / total) for s in succ.order[:k]]

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """Observe each event, then predict the successors of its key."""
        for event in events:
            self.observe(event)
            yield self._successors(event.tenant, event.key, k)
