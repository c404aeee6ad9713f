"""Which tenant owns which row of the recurrent state tensors (``StateSlots``).

A tenant gets a slot the first time the model advances it; slots are reused after
``release`` (the tenant was forgotten), and when every slot is taken the least recently
used tenant loses its slot (``on_evict`` is told, so its other state goes too). A new
owner's slot is reset to the zero state before use, so memory for state is bounded by
``StateSlots.capacity`` and no tenant ever sees another's state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

from stream_warmer.model.net import StateSlots


class TenantSlots:
    """Tenant -> slot of ``states``, least recently used evicted (module docstring)."""

    def __init__(self, states: StateSlots, on_evict: Callable[[str], None]) -> None:
        self.states = states
        self.on_evict = on_evict
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._slots

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self.states.capacity

    def ids(self, tenants: list[str]) -> list[int]:
        """The slot of each tenant (at most ``capacity`` distinct), assigning new ones."""
        get, touch = self._slots.get, self._slots.move_to_end
        out, fresh = [], []
        for tenant in tenants:
            slot = get(tenant)
            if slot is None:
                slot = self._assign(tenant)
                fresh.append(slot)
            else:
                touch(tenant)
            out.append(slot)
        if fresh:
            self.states.reset(torch.tensor(fresh, device=self.states.h.device))
        return out

    def _assign(self, tenant: str) -> int:
        if self._free:
            slot = self._free.pop()
        elif len(self._slots) < self.capacity:
            slot = len(self._slots)  # slots in use + free ones are always 0..n-1
        else:
            old, slot = self._slots.popitem(last=False)
            self.on_evict(old)
        self._slots[tenant] = slot
        return slot

    def release(self, tenant: str) -> None:
        """The tenant is gone: its slot may be given to another."""
        slot = self._slots.pop(tenant, None)
        if slot is not None:
            self._free.append(slot)

    def clear(self) -> None:
        """Every tenant loses its slot (their next step starts from the zero state)."""
        self._slots.clear()
        self._free.clear()
