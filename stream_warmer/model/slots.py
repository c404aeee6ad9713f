"""Which tenant owns which row of the recurrent state tensors (``StateSlots``).

A tenant gets a slot the first time the model advances it; slots are reused after
``release`` (the tenant was forgotten), and when every slot is taken the least recently
used tenant loses its slot (``on_evict`` is told, so its other state goes too). A new
owner's slot is reset to the zero state before use, so memory for state is bounded by
``StateSlots.capacity`` and no tenant ever sees another's state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from stream_warmer_native import Slots

from stream_warmer.model.state import StateSlots


class TenantSlots:
    """Tenant -> slot of ``states``, least recently used evicted (module docstring).

    The table is native code (``stream_warmer_native.Slots``, native/src/slots.rs):
    one hash lookup per tenant of a batch, O(1) recency updates."""

    def __init__(self, states: StateSlots, on_evict: Callable[[str], None]) -> None:
        self.states = states
        self.on_evict = on_evict
        self._table = Slots(states.capacity)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, tenant: object) -> bool:
        return isinstance(tenant, str) and tenant in self._table

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self.states.capacity

    def ids(self, tenants: list[str]) -> np.ndarray:
        """The slot of each tenant (at most ``capacity`` distinct, int64), assigning new
        ones; the tenants that lost theirs are told to ``on_evict``, oldest first."""
        ids, fresh, evicted = self._table.ids(tenants)
        for old in evicted:
            self.on_evict(old)
        if fresh:
            self.states.reset(torch.frombuffer(fresh, dtype=torch.int64).to(self.states.h.device))
        return np.frombuffer(ids, dtype=np.int64)

    def release(self, tenant: str) -> None:
        """The tenant is gone: its slot may be given to another."""
        self._table.release(tenant)

    def clear(self) -> None:
        """Every tenant loses its slot (their next step starts from the zero state)."""
        self._table.clear()

    def memory_bytes(self) -> int:
        """Bytes of the table itself (the state tensors are ``states``)."""
        return int(self._table.memory_bytes())
