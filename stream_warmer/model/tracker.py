"""Online per-tenant state that turns each access into model inputs and candidates.

For every access the tracker updates the tenant's successor table with the
transition (previous key -> this key) and yields the categorical ids, which classes
were correct for this key at the previous step (``correct``, a bitmask; also the
previous step's training target), which classes have a candidate now (``present``),
and the candidate key of each class (None where absent). The same code runs in
training, in the evaluator and in serving, so features never drift between them.

The per-event work is native code (``stream_warmer_native``, native/src/lib.rs): a
Python loop over events was half of the serve path's time. ``step`` takes one
access (a ``Step``); ``step_batch`` takes a micro-batch and returns arrays grouped by
tenant (a ``Batch``); ``encode`` runs a whole training stream. The tracker also keeps
each tenant's newest class probabilities (``set_probs``) so ``choose`` decodes warms
from them without a round trip through Python objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from stream_warmer_native import Cands, Tracker

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import OPS, FeatureSpec, Key

I64 = npt.NDArray[np.int64]
T = TypeVar("T")

__all__ = ["Batch", "CandidateTracker", "Cands", "Step", "TableStats"]


class TableStats(NamedTuple):
    """Successor tables against their memory budget (native/src/table.rs)."""

    bytes: int  # charged against the budget (the estimate of table.rs)
    rows: int
    evictions: int  # rows evicted by a bound (the budget or the per-tenant cap), so far
    budget: int  # bytes


class Step(NamedTuple):
    """Model inputs and candidates of one access."""

    cats: tuple[int, ...]
    correct: int
    present: int
    cands: list[Key | None]


class Batch(NamedTuple):
    """A micro-batch of accesses, in event order (N events of B distinct tenants)."""

    cats: I64  # (N, K) categorical ids
    masks: I64  # (N, 2) correct, present bitmasks
    group: I64  # (N,) index of the event's tenant in ``tenants``
    pos: I64  # (N,) the event's place in its tenant's run within the batch
    tenants: list[str]  # (B,) first appearance order
    cands: Cands | None  # every event's candidates, when asked for


def _i64(buf: bytearray, cols: int = 0) -> I64:
    arr = np.frombuffer(buf, dtype=np.int64)
    return arr.reshape(-1, cols) if cols else arr


class CandidateTracker:
    """Per-tenant successor tables and last-step state; all tenants' tables within one
    memory budget (``spec.table_bytes``), each within ``spec.max_keys_per_tenant`` rows."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._n_cats = len(spec.cat_sizes)
        self._native = Tracker(
            ranks=spec.ranks, deltas=list(spec.deltas), size_unit=spec.size_unit,
            max_successors=spec.max_successors, max_keys_per_tenant=spec.max_keys_per_tenant,
            table_bytes=spec.table_bytes,
            gap_edges=list(spec.gap_edges), size_edges=list(spec.size_edges),
            offsets=[int(x) for x in spec.cat_offsets], ops=list(OPS.items()),
            ahead_window=spec.ahead_window, ahead_ranks=spec.ahead_ranks,
            ahead_successors=spec.ahead_successors, ahead_lead=spec.ahead_lead)

    def set_ahead_lead(self, lead: int) -> None:
        """From now on, window tables count from ``lead`` requests after each key (the
        tables learnt so far are kept); ``spec`` says so."""
        self.spec = self.spec.with_lead(lead)
        self._native.set_ahead_lead(self.spec.ahead_lead)

    def forget(self, tenant: str) -> None:
        """Drop a tenant's state."""
        self._native.forget(tenant)

    def __len__(self) -> int:
        return len(self._native)

    def memory_bytes(self) -> int:
        """Bytes of per-tenant state held (tables, last steps, newest probabilities)."""
        return int(self._native.memory_bytes())

    def table_stats(self) -> TableStats:
        """The successor tables (window tables included) against their budget."""
        return TableStats(*self._native.table_stats())

    def table_len(self, tenant: str) -> int:
        """Keys in ``tenant``'s successor table."""
        return int(self._native.table_len(tenant))

    def knows(self, tenant: str, key: Key) -> bool:
        """Whether ``key`` (parsed) has a row in ``tenant``'s successor table."""
        return bool(self._native.knows(tenant, key))

    def seed(self, tenant: str, table: Iterable[tuple[str, Mapping[str, int]
                                                      | Iterable[tuple[str, int]]]]) -> None:
        """Add successor counts learnt elsewhere (e.g. the Markov baseline) to ``tenant``.

        ``table`` yields (key, {successor: count} or [(successor, count), ...], as the
        baseline's ``tables.rows`` gives them), oldest first; the bounds of the spec
        hold (the newest keys and, per key, the most frequent successors are kept). The
        tenant's last key is not set, so its next access starts a fresh transition.
        """
        rows = [(key, [(s, int(n)) for s, n in (
                    counts.items() if isinstance(counts, Mapping) else counts)])
                for key, counts in table]
        self._native.seed(tenant, rows)

    def top_successors(self, tenant: str, key: Key, k: int) -> list[Key]:
        """The ``k`` most frequent successors of ``key`` seen for ``tenant`` (first seen
        first among equal counts), as the candidate ranks order them."""
        return list(self._native.top_successors(tenant, key, k))

    def step(self, ev: AccessEvent) -> Step:
        """Observe one access and return its inputs and candidates."""
        cats, correct, present, cands = self._native.step(ev)
        return Step(cats, correct, present, cands)

    def step_batch(self, events: list[AccessEvent], *, keep: bool = False,
                   marks_k: int = 0) -> Batch:
        """Observe ``events`` in order (the serve path). With ``keep``, every event's
        candidates come back too; with ``marks_k``, also each event's top ``marks_k``
        successors right after it (``Cands.marks``)."""
        cats, masks, group, pos, tenants, cands = self._native.step_batch(events, keep, marks_k)
        return Batch(_i64(cats, self._n_cats), _i64(masks, 2), _i64(group), _i64(pos),
                     tenants, cands)

    def encode(self, events: Sequence[AccessEvent], keep_from: int, *, lead: int = 0,
               horizon: int = 1) -> tuple[I64, I64, I64, I64, I64, Cands]:
        """A stream from this tracker's state: (cats (N, K), correct, present, target,
        dense tenant index, candidates of the steps from ``keep_from``). A step's target
        is the classes whose key the tenant asks for after ``lead`` more requests of the
        stream and within its next ``horizon`` from then (native/src/ahead.rs)."""
        cats, correct, present, target, tenant, cands = self._native.encode(
            events, keep_from, lead, horizon)
        return (_i64(cats, self._n_cats), _i64(correct), _i64(present), _i64(target),
                _i64(tenant), cands)

    def set_probs(self, tenants: list[str], probs: npt.NDArray[np.float32]) -> None:
        """Keep each tenant's newest class probabilities, (B, C)."""
        self._native.set_probs(tenants, np.ascontiguousarray(probs, dtype=np.float32).tobytes())

    def choose(self, tenants: list[str], k: int, threshold: float,
               make: Callable[[str, float], T] | None = None) -> list[list[T] | None]:
        """Per tenant: up to ``k`` (key, score capped at 1) with the pooled probability
        at or above ``threshold``, from its newest step, each as ``make(key, score)``
        (default: the tuple); None before it has any."""
        out: list[Any] = self._native.choose(tenants, k, threshold, make)
        return out
