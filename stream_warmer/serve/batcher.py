"""Micro-batcher: collect the tenants with new events, flush at a size or an age.

A batch is due when it holds ``max_batch`` tenants or its oldest entry is
``max_delay_ms`` old, whichever comes first. A tenant with several new events since
the last flush is held once, with its newest event and the ones before it in this
batch (``earlier``, at most ``max_events_per_tenant - 1``): a strategy that answers
each event (``per_event``: the baselines, the peers, the LSTM) is asked about each of
them too (``add``); one that predicts on a tenant's newest window only gets
``add_newest``, which keeps none. Events beyond the bound are never asked about
(``coalesced``, a metric). The clock is injected (seconds, monotonic).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from stream_warmer.events import AccessEvent
from stream_warmer.settings import BatchSettings


class Pending(NamedTuple):
    """A tenant due for a prediction, with the newest event that caused it."""

    tenant: str
    partition: int
    offset: int
    event: AccessEvent
    earlier: tuple[tuple[int, AccessEvent], ...] = ()  # (offset, event), oldest first


class MicroBatcher:
    """Tenants with new events since the last flush, newest event each."""

    def __init__(self, settings: BatchSettings, clock: Callable[[], float]) -> None:
        self._max_batch = settings.max_batch
        self._max_earlier = settings.max_events_per_tenant - 1
        self._max_delay_s = settings.max_delay_ms / 1000.0
        self._clock = clock
        # tenant -> (partition, offset, newest event); Pending is built at drain time
        self._pending: dict[str, tuple[int, int, AccessEvent]] = {}
        self._earlier: dict[str, deque[tuple[int, AccessEvent]]] = {}
        self._opened_at = 0.0
        self.coalesced = 0  # events of ``add`` that fell out of ``earlier`` unasked

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, partition: int, offset: int, event: AccessEvent) -> None:
        """Note a new event of ``event.tenant``; the one it replaces becomes ``earlier``."""
        if not self._pending:
            self._opened_at = self._clock()
        tenant = event.tenant
        before = self._pending.get(tenant)
        if before is not None and not self._max_earlier:
            self.coalesced += 1
        elif before is not None:
            earlier = self._earlier.get(tenant)
            if earlier is None:
                earlier = self._earlier[tenant] = deque(maxlen=self._max_earlier)
            elif len(earlier) == self._max_earlier:
                self.coalesced += 1
            earlier.append((before[1], before[2]))  # the oldest falls out at the bound
        self._pending[tenant] = (partition, offset, event)

    def add_newest(self, partition: int, offset: int, event: AccessEvent) -> None:
        """``add`` for a strategy that predicts on each tenant's newest window only: the
        replaced event is not kept (``earlier`` stays empty)."""
        if not self._pending:
            self._opened_at = self._clock()
        self._pending[event.tenant] = (partition, offset, event)

    def backdate(self, since: float) -> None:
        """The oldest entry may have waited since ``since`` (e.g. inside a blocking poll)."""
        if self._pending and since < self._opened_at:
            self._opened_at = since

    def due(self) -> bool:
        """True when the batch is full or its oldest entry has waited ``max_delay_ms``."""
        if not self._pending:
            return False
        if len(self._pending) >= self._max_batch:
            return True
        return self._clock() - self._opened_at >= self._max_delay_s

    def time_to_due(self, default: float) -> float:
        """Seconds until the batch is due by age (``default`` when it is empty)."""
        if not self._pending:
            return default
        return max(0.0, self._opened_at + self._max_delay_s - self._clock())

    def drain(self) -> list[Pending]:
        """Take up to ``max_batch`` tenants, oldest first; the rest stay for the next flush."""
        if len(self._pending) <= self._max_batch:
            taken, self._pending = self._pending, {}
        else:
            taken = {t: self._pending.pop(t) for t in list(self._pending)[: self._max_batch]}
        earlier = self._earlier
        return [Pending(t, p, o, e, tuple(earlier.pop(t, ()))) for t, (p, o, e) in taken.items()]

    def discard_partitions(self, partitions: Iterable[int]) -> int:
        """Forget entries of revoked partitions (their events are re-handled elsewhere)."""
        gone = set(partitions)
        keep = {t: entry for t, entry in self._pending.items() if entry[0] not in gone}
        dropped = len(self._pending) - len(keep)
        self._pending = keep
        self._earlier = {t: e for t, e in self._earlier.items() if t in keep}
        return dropped

    def clear(self) -> int:
        """Forget everything (the events will be re-handled); return how many tenants."""
        dropped = len(self._pending)
        self._pending, self._earlier = {}, {}
        return dropped
