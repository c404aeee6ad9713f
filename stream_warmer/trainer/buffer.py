"""A bounded buffer of the most recent access events, held as pandas chunks.

Each poll batch becomes one columnar chunk (``tenant, key, ts, op, size``); when the
buffer holds more than ``capacity`` rows the oldest rows are dropped (whole chunks,
then a slice of the oldest one). ``frame()`` concatenates a snapshot for a training
round; ``to_events`` turns a snapshot back into ``AccessEvent`` values in time order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import pandas as pd

from stream_warmer.events import AccessEvent

COLUMNS = ("tenant", "key", "ts", "op", "size")


class EventBuffer:
    """The newest ``capacity`` events, oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            msg = f"buffer capacity must be >= 1, got {capacity}"
            raise ValueError(msg)
        self._capacity = capacity
        self._chunks: deque[pd.DataFrame] = deque()
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    @property
    def capacity(self) -> int:
        """The most rows held."""
        return self._capacity

    def extend(self, events: Sequence[AccessEvent]) -> None:
        """Append events (in arrival order) and drop the oldest past capacity."""
        if not events:
            return
        chunk = pd.DataFrame(
            {
                "tenant": [e.tenant for e in events],
                "key": [e.key for e in events],
                "ts": pd.array([e.ts for e in events], dtype="int64"),
                "op": [e.op for e in events],
                "size": pd.array([e.size for e in events], dtype="Int64"),
            }
        )
        self._chunks.append(chunk)
        self._rows += len(chunk)
        self._trim()

    def _trim(self) -> None:
        excess = self._rows - self._capacity
        while excess > 0:
            oldest = self._chunks[0]
            if len(oldest) <= excess:
                self._chunks.popleft()
                self._rows -= len(oldest)
            else:
                self._chunks[0] = oldest.iloc[excess:]
                self._rows -= excess
            excess = self._rows - self._capacity

    def frame(self) -> pd.DataFrame:
        """A snapshot of every held event, oldest first, with a fresh index."""
        if not self._chunks:
            return pd.DataFrame({c: [] for c in COLUMNS})
        return pd.concat(list(self._chunks), ignore_index=True)


def to_events(frame: pd.DataFrame) -> list[AccessEvent]:
    """The frame's events sorted by ``ts`` (stable, so per-tenant order is kept)."""
    ordered = frame.sort_values("ts", kind="stable")
    sizes = [None if pd.isna(s) else int(s) for s in ordered["size"]]
    return [
        AccessEvent(tenant, key, int(ts), op, size)
        for tenant, key, ts, op, size in zip(
            ordered["tenant"], ordered["key"], ordered["ts"], ordered["op"], sizes, strict=True
        )
    ]
