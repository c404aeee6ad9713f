"""Per-tenant sliding windows, kept per assigned partition and bounded.

Bounds: ``length`` events per window (a ``deque(maxlen=...)``), ``max_tenants``
windows in all (the least recently active tenant is evicted first), and tenants idle
for longer than ``idle_evict_s`` are swept out. Every eviction is counted by reason.
On revoke, the windows of the revoked partitions are dropped; they rebuild from the
stream on whichever consumer gets those partitions next.

Time is passed in by the caller (once per poll batch), never read here.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from stream_warmer.events import AccessEvent
from stream_warmer.settings import WindowSettings
from stream_warmer.strategies.base import Window


class _Slot:
    """One tenant's window and where and when it was last fed."""

    __slots__ = ("events", "last_seen", "partition")

    def __init__(self, partition: int, length: int, now: float) -> None:
        self.partition = partition
        self.events: deque[AccessEvent] = deque(maxlen=length)
        self.last_seen = now


class TenantWindows:
    """The windows of every tenant held by this consumer, least recently active first."""

    def __init__(self, settings: WindowSettings) -> None:
        self._length = settings.length
        self._max_tenants = settings.max_tenants
        self._idle_s = settings.idle_evict_s
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self.evicted: dict[str, int] = {"capacity": 0, "idle": 0, "revoked": 0}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._slots

    def append(self, partition: int, event: AccessEvent, now: float) -> str | None:
        """Add ``event`` to its tenant's window; return a tenant evicted to make room."""
        slot = self._slots.get(event.tenant)
        if slot is not None:
            self._slots.move_to_end(event.tenant)
            slot.partition = partition
            slot.last_seen = now
            slot.events.append(event)
            return None
        slot = _Slot(partition, self._length, now)
        slot.events.append(event)
        self._slots[event.tenant] = slot
        if len(self._slots) <= self._max_tenants:
            return None
        evicted, _ = self._slots.popitem(last=False)
        self.evicted["capacity"] += 1
        return evicted

    def window(self, tenant: str) -> Window | None:
        """The tenant's window (oldest first), or None when it is not held."""
        slot = self._slots.get(tenant)
        if slot is None:
            return None
        return Window(tenant, tuple(slot.events))

    def evict_idle(self, now: float) -> list[str]:
        """Drop tenants idle for longer than ``idle_evict_s``; return them."""
        cutoff = now - self._idle_s
        gone: list[str] = []
        while self._slots:
            tenant, slot = next(iter(self._slots.items()))
            if slot.last_seen > cutoff:
                break
            self._slots.popitem(last=False)
            gone.append(tenant)
        self.evicted["idle"] += len(gone)
        return gone

    def drop_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Drop the windows of revoked partitions; return the tenants dropped."""
        revoked = set(partitions)
        gone = [t for t, slot in self._slots.items() if slot.partition in revoked]
        for tenant in gone:
            del self._slots[tenant]
        self.evicted["revoked"] += len(gone)
        return gone
