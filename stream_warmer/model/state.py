"""The recurrent state of the tenants served: per-tenant (h, c) rows of two tensors.

Runtime state, not part of the network (``model.net``); which tenant owns which row is
``model.slots.TenantSlots``. torch only, so ``scripts/gpu_check.py`` runs it bare.
"""

from __future__ import annotations

import torch


class StateSlots:
    """Per-tenant (h, c) in slots of two device tensors, zero-initialised explicitly."""

    def __init__(self, layers: int, slots: int, hidden: int, device: torch.device) -> None:
        self.h = torch.zeros(layers, slots, hidden, device=device)  # (L, S, H)
        self.c = torch.zeros(layers, slots, hidden, device=device)  # (L, S, H)

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return int(self.h.shape[1])

    def read(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) of ``slots``: copies, (L, B, H) each."""
        return self.h.index_select(1, slots), self.c.index_select(1, slots)

    def write(self, slots: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
        """Store (h, c) (L, B, H) into ``slots``; bf16 under autocast, kept in fp32 here."""
        self.h.index_copy_(1, slots, h.to(self.h.dtype))  # slots are distinct
        self.c.index_copy_(1, slots, c.to(self.c.dtype))

    def reset(self, slots: torch.Tensor) -> None:
        """Re-initialise the given slots (a new or evicted tenant) to the zero state."""
        self.h[:, slots] = 0.0
        self.c[:, slots] = 0.0
