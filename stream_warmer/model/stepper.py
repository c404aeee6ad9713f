"""Tenants' steps through the model from their recurrent slot state (serve and evaluator).

``Stepper`` owns what one served model needs to advance tenants: the device chosen once,
the host staging and the checked precision of ``model.runtime``, and the slot table of
the tenants' (h, c) state. ``advance`` runs the steps of a tracker batch
(``model.tracker.Batch``: each tenant's new steps, in order) from each tenant's slot, in
groups of at most the slot capacity, and writes the new state back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from stream_warmer.model.dataset import expand_bits
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.model.runtime import (
    PrecisionCheck,
    Staging,
    autocast,
    candidate_precision,
    pick_device,
)
from stream_warmer.model.slots import TenantSlots
from stream_warmer.model.state import StateSlots
from stream_warmer.model.tracker import Batch
from stream_warmer.settings import ModelSettings

# what one group of tenants stepped to: logits (N_group, C) of its events in batch order,
# or probabilities (B_group, C) at each tenant's newest step with ``last_only``; the row
# of each tenant's newest event; the probabilities at each tenant's newest step
Stepped = tuple[np.ndarray, npt.NDArray[np.int64], np.ndarray]
Rows = npt.NDArray[np.bool_] | slice  # a group's events in the batch (a mask, or all)
# per group of tenants: its rows, its tenants, what it stepped to
Advanced = tuple[Rows, list[str], Stepped]


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of logit rows (N, C), as the evaluator computes them
    (``torch.softmax``; a row's result does not depend on the rows beside it)."""
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


class Stepper:
    """The model on its device, its precision check and the tenants' slots (module doc)."""

    def __init__(self, model: WarmNet, spec: FeatureSpec, settings: ModelSettings,
                 on_evict: Callable[[str], None]) -> None:
        self.device = pick_device(settings.device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.staging = Staging(self.device)
        self.precision_check = PrecisionCheck(
            candidate_precision(settings.precision, self.device),
            predictions=settings.precision_check_rows, top_k=settings.precision_top_k,
            min_agreement=settings.precision_min_agreement)
        self.slots = TenantSlots(StateSlots(model.config.layers, settings.max_state_slots,
                                            model.config.hidden, self.device), on_evict)

    def advance(self, batch: Batch, *, last_only: bool = False) -> list[Advanced]:
        """Run each tenant's steps of ``batch`` from its slot state, in groups of at most
        the slot capacity (``Advanced``, one a group)."""
        cap, n = self.slots.capacity, len(batch.tenants)
        if n <= cap:
            return [(slice(None), batch.tenants, self._group(
                batch.tenants, batch.cats, batch.masks, batch.group, batch.pos,
                last_only=last_only))]
        out: list[Advanced] = []
        for start in range(0, n, cap):
            sel = (batch.group >= start) & (batch.group < start + cap)
            tenants = batch.tenants[start : start + cap]
            out.append((sel, tenants, self._group(
                tenants, batch.cats[sel], batch.masks[sel], batch.group[sel] - start,
                batch.pos[sel], last_only=last_only)))
        return out

    def _group(self, group: list[str], cats: np.ndarray, masks: np.ndarray,
               rows_of: np.ndarray, pos: np.ndarray, *, last_only: bool) -> Stepped:
        b = len(group)
        lens = np.bincount(rows_of, minlength=b)  # (B,) steps per tenant
        steps = np.zeros((b, int(lens.max())), dtype=np.int64)  # (B, T) -> event row
        steps[rows_of, pos] = np.arange(len(rows_of))
        newest = steps[np.arange(b), lens - 1]  # (B,) each tenant's newest event row
        stage, dev, check = self.staging, self.device, self.precision_check
        with torch.inference_mode():
            slots = stage.to_device("slots", torch.from_numpy(self.slots.ids(group)))  # (B,)
            cats_d = stage.to_device("cats", torch.from_numpy(cats))  # (N, K)
            masks_d = stage.to_device("masks", torch.from_numpy(masks))  # (N, 2)
            bits = expand_bits(masks_d[:, 0], masks_d[:, 1], self.spec.n_classes)  # (N, 2C)
            states = self.slots.states
            state = states.read(slots)  # (L, B, H) each
            with autocast(check.active, dev):
                logits, (h, c) = self.model.forward_ragged(cats_d, bits, steps, lens, state,
                                                           every_step=not last_only)
            if check.checking:  # same inputs and state; its own state is thrown away
                assert check.candidate is not None
                with autocast(check.candidate, dev):
                    cand, _ = self.model.forward_ragged(cats_d, bits, steps, lens, state,
                                                        every_step=False)
                ref = logits if last_only else logits[torch.from_numpy(newest).to(dev)]
                check.compare(ref, cand)  # (B, C) each
            states.write(slots, h, c)
            probs = stage.to_host("logits", logits.float())  # (B, C) or (N, C)
        if last_only:  # only the newest steps' probabilities (for the tracker)
            probs = newest_probs = probabilities(probs)
        else:  # every step: logits; the softmax where asked (``ScoredBatch``)
            newest_probs = probabilities(probs[newest])
        return probs, newest, newest_probs
