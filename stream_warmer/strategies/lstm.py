"""The LSTM warming strategy: streaming-mode inference over candidate classes.

Each observed access goes through the ``CandidateTracker`` (successor tables, deltas,
features); the model advances the tenant's (h, c) slot over the steps not yet seen and
scores the classes of the newest step; classes naming the same key pool their
probability, and keys at or above the trained threshold are warmed, best first.
Inference runs under ``torch.inference_mode()`` on the device chosen once here, with
the host staging and the checked precision of ``model.runtime`` (pinned buffers and
non-blocking copies on CUDA; bf16 only once it kept the fp32 top-k on live rows).
``fit_strategy`` trains one on a trace's first half (the evaluator's entry point).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch

from stream_warmer.events import AccessEvent, is_ascii_digits
from stream_warmer.model.budget import WarmBudget
from stream_warmer.model.dataset import expand_bits, pad_steps
from stream_warmer.model.decode import choose
from stream_warmer.model.features import FeatureSpec, parse_key
from stream_warmer.model.net import StateSlots, WarmNet
from stream_warmer.model.runtime import (
    PrecisionCheck,
    Staging,
    autocast,
    candidate_precision,
    pick_device,
)
from stream_warmer.model.slots import TenantSlots
from stream_warmer.model.tracker import CandidateTracker, Step
from stream_warmer.settings import ModelSettings, Settings
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.baselines import Markov


class LstmStrategy(WarmingStrategy):
    """Streaming LSTM over per-tenant candidate features (see the module docstring)."""

    name = "lstm"

    @property
    def nested_k(self) -> bool:
        """Whether the top k is a prefix of the top k+1 (the evaluator then serves every
        k from one run). Not with the online budget: its threshold follows k."""
        return not self.settings.budget_online

    def __init__(self, model: WarmNet, spec: FeatureSpec, threshold: float,
                 settings: ModelSettings, *, version: str = "untrained", chunk: int = 2048) -> None:
        if settings.cpu_threads > 0:
            torch.set_num_threads(settings.cpu_threads)
        self.device = pick_device(settings.device)
        self.model = model.to(self.device).eval()
        self._staging = Staging(self.device)
        self.precision_check = PrecisionCheck(
            candidate_precision(settings.precision, self.device),
            predictions=settings.precision_check_rows, top_k=settings.precision_top_k,
            min_agreement=settings.precision_min_agreement)
        self.spec = spec
        self.threshold = float(threshold)
        self.chunk = chunk
        self._version = version
        self._tracker = CandidateTracker(spec)
        self._slots = TenantSlots(StateSlots(model.config.layers, settings.max_state_slots,
                                             model.config.hidden, self.device), self._evicted)
        self._pending: dict[str, list[Step]] = {}
        self._newest: dict[str, tuple[Step, list[float]]] = {}  # newest step, its probs
        self.settings = settings
        self.budget: WarmBudget | None = None
        self._k = 1  # warms per request, as last asked (predict / predict_stream)
        if settings.cache_capacity > 0:
            self.set_cache_capacity(settings.cache_capacity)

    @property
    def model_version(self) -> str:
        """The version of the loaded model (stamped on warm commands)."""
        return self._version

    @property
    def precision(self) -> str:
        """The precision served now (``fp32`` until a candidate passed its check)."""
        return self.precision_check.active

    def set_cache_capacity(self, capacity: int) -> None:
        """Size the online budget's shadow caches (no budget when ``budget_online`` is off)."""
        if not self.settings.budget_online:
            return
        if self.budget is None:
            self.budget = WarmBudget(self.threshold, capacity, self.settings.budget_margin)
        else:
            self.budget.capacity = max(1, int(capacity))

    def fresh(self) -> LstmStrategy:
        """A new strategy over the same (frozen) model, with empty online state."""
        return LstmStrategy(self.model, self.spec, self.threshold, self.settings,
                            version=self._version, chunk=self.chunk)

    def observe(self, event: AccessEvent) -> None:
        """Track the access; the model advances lazily at the next predict."""
        step = self._tracker.step(event)
        self._pending.setdefault(event.tenant, []).append(step)
        if self.budget is not None:
            self.budget.request((event.tenant, event.key), self._markov(event, step),
                                _next_keys(event.key, self._k))

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """Up to ``k`` warms per window's tenant, for the key after its newest access."""
        self._k = k  # the baselines' shadows warm as many (see ``observe``)
        for w in windows:
            if w.tenant not in self._newest and w.tenant not in self._pending:
                for ev in w.events:
                    self.observe(ev)
        if self._pending:
            pending = self._pending
            for group, _, probs in self._advance(list(pending), last_only=True):
                last = probs[:, 0].tolist()  # (B, C): each tenant's newest step
                steps = [pending[t][-1] for t in group]
                self._newest.update(zip(group, zip(steps, last, strict=True), strict=True))
            pending.clear()
        out: list[list[Prediction]] = [[] for _ in windows]
        found = [(i, newest) for i, w in enumerate(windows)
                 if (newest := self._newest.get(w.tenant)) is not None]
        if not found:
            return out
        decoded = self._decode([n[1] for _, n in found], [n[0] for _, n in found], k)
        for (i, _), preds in zip(found, decoded, strict=True):
            out[i] = preds
            if self.budget is not None and preds:
                self.budget.warm(windows[i].tenant, [p.key for p in preds])
        return out

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """Observe-then-predict per event, batched in chunks of ``self.chunk`` events."""
        self._k = k
        it = iter(events)
        while chunk := list(islice(it, self.chunk)):
            steps, marks = [], []  # marks: Markov's top k then, not after the whole chunk
            for ev in chunk:
                steps.append(step := self._tracker.step(ev))
                if self.budget is not None:
                    marks.append(self._markov(ev, step))
            by_tenant: dict[str, list[int]] = {}
            for i, ev in enumerate(chunk):
                by_tenant.setdefault(ev.tenant, []).append(i)
            for tenant, idx in by_tenant.items():
                self._pending.setdefault(tenant, []).extend(steps[i] for i in idx)
            rows = np.zeros((len(chunk), self.spec.n_classes), dtype=np.float32)  # (N, C)
            for group, lens, probs in self._advance(list(by_tenant)):
                for r, (tenant, n) in enumerate(zip(group, lens, strict=True)):
                    idx = by_tenant[tenant]
                    rows[idx] = probs[r, :n]
                    self._newest[tenant] = (steps[idx[-1]], probs[r, n - 1].tolist())
            self._pending.clear()
            picks = self._scored(rows, steps, k)
            if self.budget is None:
                yield from self._filter(picks)
                continue
            for ev, mark, scored in zip(chunk, marks, picks, strict=True):
                keep = self.budget.step((ev.tenant, ev.key), scored, mark, _next_keys(ev.key, k))
                yield [Prediction(key, score) for key, score in keep]

    def adopt_state(self, previous: WarmingStrategy) -> None:
        """Take over the streaming state of the strategy this one replaces (hot swap).

        From an ``LstmStrategy`` with the same feature spec: its tracker (successor
        tables, last steps), pending steps and newest rows, and its recurrent slots when
        the state tensors have the same shape (else tenants restart from zero state).
        From a ``Markov`` baseline (the fallback before the first model): its successor
        tables seed the tracker, so candidates exist right after the swap. Anything
        else is ignored. The online budget keeps its shadows across an LSTM swap.
        """
        if isinstance(previous, LstmStrategy) and previous.spec == self.spec:
            self._tracker, self._pending = previous._tracker, previous._pending
            self._newest = previous._newest
            if (previous._slots.states.h.shape == self._slots.states.h.shape
                    and previous.device == self.device):
                self._slots = previous._slots
                self._slots.on_evict = self._evicted
            # else: tenants keep their candidates; their slots start from zero state
            if previous.budget is not None and self.budget is not None:
                self.budget.adopt(previous.budget)
        elif isinstance(previous, Markov):
            for tenant, table in previous._tables.items():
                self._tracker.seed(tenant, ((k, s.counts) for k, s in table.items()))

    def _markov(self, event: AccessEvent, step: Step) -> list[str]:
        """What Markov warms after ``event``: its top ``k`` successors (shadow budget)."""
        k, ranks = self._k, self.spec.ranks
        if k <= ranks:  # the step's rank candidates already are the top ones
            return [str(c) for c in step.cands[1 : 1 + k] if c is not None]
        top = self._tracker.top_successors(event.tenant, parse_key(event.key), k)
        return [str(c) for c in top]

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop tenants' tracker state and free their slots."""
        for tenant in tenants:
            self._tracker.forget(tenant)
            self._pending.pop(tenant, None)
            self._newest.pop(tenant, None)
            self._slots.release(tenant)

    def _evicted(self, tenant: str) -> None:
        """Its slot went to another tenant (LRU): its candidates and newest row go too."""
        self._tracker.forget(tenant)
        self._newest.pop(tenant, None)

    def _decode(self, rows: list[list[float]], steps: Sequence[Step], k: int
                ) -> list[list[Prediction]]:
        """``_filter(_scored(...))`` in one pass (the serve path)."""
        t = self.budget.threshold if self.budget is not None else self.threshold
        picks = choose(rows, [s.cands for s in steps], k)
        return [[Prediction(str(key), score if score < 1.0 else 1.0)
                 for key, score in p if score >= t] for p in picks]

    def _scored(self, rows: np.ndarray, steps: Sequence[Step], k: int
                ) -> list[list[tuple[str, float]]]:
        picks = choose(rows, [s.cands for s in steps], k)  # rows (N, C)
        return [[(str(key), min(1.0, score)) for key, score in p] for p in picks]

    def _filter(self, picks: list[list[tuple[str, float]]]) -> list[list[Prediction]]:
        t = self.budget.threshold if self.budget is not None else self.threshold
        return [[Prediction(key, score) for key, score in p if score >= t] for p in picks]

    def _advance(self, tenants: list[str], *, last_only: bool = False
                 ) -> list[tuple[list[str], list[int], np.ndarray]]:
        """Run each tenant's pending steps from its slot state, in groups of at most the
        slot capacity: (tenants, their step counts, probabilities) per group, (B, T, C),
        or (B, 1, C) at each row's newest step with ``last_only``."""
        out = []
        cap = self._slots.capacity
        for start in range(0, len(tenants), cap):
            group = [t for t in tenants[start : start + cap] if self._pending.get(t)]
            if group:
                out.append(self._advance_group(group, last_only))
        return out

    def _advance_group(self, group: list[str], last_only: bool
                       ) -> tuple[list[str], list[int], np.ndarray]:
        seqs = [self._pending[t] for t in group]
        lens = [len(s) for s in seqs]
        cats, masks = pad_steps(seqs, lens)  # (B, T, K), (B, T, 2)
        # equal lengths need no packing (the serve path: one new step per tenant)
        lengths = None if min(lens) == max(lens) else torch.tensor(lens)  # (B,)
        stage, dev, check = self._staging, self.device, self.precision_check
        with torch.inference_mode():
            slots = stage.to_device("slots", torch.tensor(self._slots.ids(group)))  # (B,)
            cats_d, masks_d = stage.to_device("cats", cats), stage.to_device("masks", masks)
            bits = expand_bits(masks_d[..., 0], masks_d[..., 1], self.spec.n_classes)  # (B,T,2C)
            states = self._slots.states
            state = states.read(slots)  # (L, B, H) each
            with autocast(check.active, dev):
                logits, (h, c) = self.model.forward_seq(cats_d, bits, state, lengths)  # (B,T,C)
            newest = torch.tensor(lens, device=dev) - 1  # (B,)
            rows = torch.arange(len(group), device=dev)  # (B,)
            if check.checking:  # same inputs and state; its own state is thrown away
                assert check.candidate is not None
                with autocast(check.candidate, dev):
                    cand, _ = self.model.forward_seq(cats_d, bits, state, lengths)
                check.compare(logits[rows, newest], cand[rows, newest])
            states.write(slots, h, c)
            if last_only:
                logits = logits[rows, newest][:, None]  # (B, 1, C)
            probs = stage.to_host("probs", torch.softmax(logits.float(), dim=-1))
        return group, lens, probs


def _next_keys(key: str, k: int) -> list[str]:
    """What ``nextkey`` warms after ``key``: key+1 ... key+k (integer keys only)."""
    if not is_ascii_digits(key):
        return []
    n = int(key)
    return [str(n + i) for i in range(1, k + 1)]


def fit_strategy(train_events: list[AccessEvent], settings: Settings) -> WarmingStrategy:
    """Train on ``train_events`` and return a fresh strategy (empty online state)."""
    from stream_warmer.model.train import train_model

    trained = train_model(train_events, settings.trainer, settings.model)
    return LstmStrategy(trained.model, trained.spec, trained.threshold, settings.model,
                        version="fit")


def strategy_from_artifact(weights: bytes, manifest: dict[str, Any], settings: ModelSettings,
                           version: str) -> LstmStrategy:
    """A fresh strategy from a checkpoint artifact (validated; raises ``ModelError``)."""
    from stream_warmer.model.checkpoint import from_artifact

    loaded = from_artifact(weights, manifest)
    return LstmStrategy(loaded.model, loaded.spec, loaded.threshold, settings, version=version)


def train_artifact(events: Sequence[AccessEvent], settings: Settings,
                   previous: tuple[bytes, dict[str, Any]] | None = None
                   ) -> tuple[bytes, dict[str, Any]]:
    """Train (warm-starting from ``previous`` when its architecture allows) and package."""
    from stream_warmer.errors import ModelError
    from stream_warmer.model.checkpoint import from_artifact, to_artifact
    from stream_warmer.model.train import Trained, train_model

    prev = None
    if previous is not None:
        try:
            loaded = from_artifact(*previous)
            prev = Trained(loaded.model, loaded.spec, loaded.threshold)
        except ModelError:
            prev = None  # a bad live model never blocks training: start from scratch
    trained = train_model(events, settings.trainer, settings.model, previous=prev)
    return to_artifact(trained.model, trained.spec, trained.threshold, trained.metrics)
