"""The LSTM warming strategy: streaming-mode inference over candidate classes.

Each observed access goes through the ``CandidateTracker`` (successor tables, deltas,
features); the model advances the tenant's (h, c) slot over the steps not yet seen and
scores the classes of every step; classes naming the same key pool their probability,
and keys at or above the trained threshold are warmed, best first. Serve and the
evaluator share that path (``_scored``): the evaluator's ``predict_stream`` chooses
warms for every event, serve for the events of a micro-batch it asks about
(``strategies.scored``).
The steps run in ``model.stepper`` (the device chosen once, the tenants' slots, the
host staging and checked precision of ``model.runtime``: pinned buffers and
non-blocking copies on CUDA; bf16 only once it kept the fp32 top-k on live rows).
``fit_strategy`` trains one on a trace's first half (the evaluator's entry point).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np

from stream_warmer.events import AccessEvent
from stream_warmer.model.budget import WarmBudget
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.model.runtime import PrecisionCheck
from stream_warmer.model.stepper import Rows, Stepped, Stepper, probabilities
from stream_warmer.model.tracker import Batch, CandidateTracker, Cands, TableStats
from stream_warmer.settings import ModelSettings, Settings
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.baselines import Markov, next_keys
from stream_warmer.strategies.presence import Presence
from stream_warmer.strategies.scored import ScoredBatch


class LstmStrategy(WarmingStrategy):
    """Streaming LSTM over per-tenant candidate features (see the module docstring)."""

    name = "lstm"
    per_event = True  # the model steps every event anyway: each gets its prediction

    @property
    def nested_k(self) -> bool:
        """Whether the top k is a prefix of the top k+1 (the evaluator then serves every
        k from one run). Not with the online budget (its threshold follows k) nor the
        presence filter (what it skips depends on what was named at this k)."""
        return not (self.settings.budget_online or self.settings.presence)

    def __init__(self, model: WarmNet, spec: FeatureSpec, threshold: float,
                 settings: ModelSettings, *, version: str = "untrained", chunk: int = 2048) -> None:
        self._stepper = Stepper(model, spec, settings, self._evicted)
        self.device, self.model = self._stepper.device, self._stepper.model
        self.spec = spec
        self.threshold = float(threshold)
        self.chunk = chunk
        self._version = version
        self._tracker = CandidateTracker(spec)
        self._events: list[AccessEvent] = []  # observed, not yet tracked (``_track``)
        self._batch = ScoredBatch()  # the newest micro-batch, scored (``predict``)
        self._gone: dict[str, int] = {}  # forgotten tenant -> queued events then
        self.settings = settings
        self.budget: WarmBudget | None = None
        self.presence: Presence | None = None  # ``model.presence_filter``, once told C
        self._k = 1  # warms per request, as last asked (predict / predict_stream)
        if settings.cache_capacity > 0:
            self.set_cache_capacity(settings.cache_capacity)

    @property
    def model_version(self) -> str:
        """The version of the loaded model (stamped on warm commands)."""
        return self._version

    @property
    def precision_check(self) -> PrecisionCheck:
        """The check of a lower precision on live rows (``model.runtime``)."""
        return self._stepper.precision_check

    @property
    def precision(self) -> str:
        """The precision served now (``fp32`` until a candidate passed its check)."""
        return self.precision_check.active

    def set_cache_capacity(self, capacity: int) -> None:
        """Size the presence filter's shadow cache or the online budget's (neither
        when both settings are off)."""
        if self.settings.presence and capacity > 0:
            self.presence = Presence(capacity)
        if not self.settings.budget_online:
            return
        if self.budget is None:
            self.budget = WarmBudget(self.threshold, capacity, self.settings.budget_margin)
        else:
            self.budget.capacity = max(1, int(capacity))

    def fresh(self, threshold: float | None = None, settings: ModelSettings | None = None
              ) -> LstmStrategy:
        """A new strategy over the same (frozen) model, with empty online state (and
        another threshold or settings, when given)."""
        return LstmStrategy(self.model, self.spec,
                            self.threshold if threshold is None else threshold,
                            self.settings if settings is None else settings,
                            version=self._version, chunk=self.chunk)

    def release_floor(self) -> float | None:
        """The trained threshold, given up (``WarmingStrategy.release_floor``); None
        with the online budget, whose threshold moves with what it warmed, and with the
        presence filter, whose shadow takes in what it names."""
        if self.budget is not None or self.settings.presence:
            return None
        floor, self.threshold = self.threshold, 0.0
        return floor

    def picking(self) -> tuple[LstmStrategy, int] | None:
        """With the presence filter, an instance without it that names the top
        ``presence_candidates`` keys whatever their score, for the evaluator's frontier
        caches to pick from (``WarmingStrategy.picking``); else None."""
        if not self.settings.presence:
            return None
        plain = self.settings.model_copy(update={"presence_filter": False})
        return self.fresh(0.0, plain), self.settings.presence_candidates

    def observe(self, event: AccessEvent) -> None:
        """Queue the access; the tracker and the model advance at the next predict."""
        self._events.append(event)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """Up to ``k`` warms for each window's newest access. Serve asks about every
        event of a micro-batch (``per_event``): the accesses observed since the last call
        are scored as ``predict_stream`` scores them, the evaluator's path, so each gets
        the prediction the evaluator gives it; warms are chosen only for the events
        asked about. A window whose newest access is not among them is answered from
        its tenant's newest step (observing the window first when the tenant is new)."""
        queued = self._take_queued()
        if queued:  # a new micro-batch (a flush may ask in several chunks of tenants)
            self._batch = self._score_batch(queued, k)
        out = self._batch.answer(windows, k, self.threshold)
        rest = [i for i, preds in enumerate(out) if preds is None]
        for i, preds in zip(rest, self._newest([windows[i] for i in rest], k), strict=True):
            out[i] = preds
        return [preds or [] for preds in out]

    def _newest(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """Up to ``k`` warms per window's tenant at its newest step."""
        if not windows:
            return []
        self._k = k
        self._track()
        tenants = [w.tenant for w in windows]
        picks = self._tracker.choose(tenants, k, self._threshold(), Prediction)
        if None in picks:  # tenants never observed: their windows are their history
            for w, p in zip(windows, picks, strict=True):
                if p is None:
                    self._events.extend(w.events)
            self._track()
            picks = self._tracker.choose(tenants, k, self._threshold(), Prediction)
        out = [p or [] for p in picks]  # still None: the window had no events
        if self.budget is not None:
            for tenant, preds in zip(tenants, out, strict=True):
                if preds:
                    self.budget.warm(tenant, [p.key for p in preds])
        return out

    def _score_batch(self, events: list[AccessEvent], k: int) -> ScoredBatch:
        """A micro-batch's events scored (with the budget or the presence filter:
        answered in order, as ``predict_stream`` does, since each request moves the
        threshold or the shadow)."""
        batch = ScoredBatch()
        if self.budget is not None or self.presence is not None:
            batch.add_answers(events, list(self.predict_stream(events, k, batch=True)))
            return batch
        self._k = k
        self._track()
        for chunk, cands, logits, known in self._scored(events):
            batch.add_scored(chunk, cands, logits, known)
        return batch

    def _scored(self, events: Iterable[AccessEvent]
                ) -> Iterator[tuple[list[AccessEvent], Cands, np.ndarray, np.ndarray]]:
        """Each chunk of ``self.chunk`` events observed, stepped and scored: the
        chunk, its candidates, its class logits (N, C) in event order, and the
        probabilities already taken (N, C; NaN rows where not: each tenant's newest
        step has them, for the tracker)."""
        it = iter(events)
        while chunk := list(islice(it, self.chunk)):
            batch = self._tracker.step_batch(chunk, keep=True, marks_k=self._marks_k())
            logits = np.zeros((len(chunk), self.spec.n_classes), dtype=np.float32)  # (N, C)
            known = np.full_like(logits, np.nan)  # (N, C)
            for sel, (rows, newest, newest_probs) in self._advance(batch):
                logits[sel] = rows
                known[np.arange(len(chunk))[sel][newest]] = newest_probs
            assert batch.cands is not None
            yield chunk, batch.cands, logits, known

    def predict_stream(self, events: Iterable[AccessEvent], k: int, *, batch: bool = False
                       ) -> Iterator[list[Prediction]]:
        """Observe-then-predict per event, batched in chunks of ``self.chunk`` events.

        ``batch``: the events are serve's micro-batch, already served when its warms
        land, so the presence filter's shadow takes in all of its requests before any
        pick (a key asked for later in the batch is cached by then: naming it for an
        earlier event would spend the warm on nothing). The evaluator's stream has no
        batches: each event is the present (and a chunk is not one)."""
        self._k = k
        self._track()
        budget, presence = self.budget, self.presence
        for chunk, cands, logits, _ in self._scored(events):
            rows = probabilities(logits)
            if presence is not None:  # the first k of its top keys the cache lacks
                picks = cands.choose(rows.tobytes(), self.settings.presence_candidates,
                                     as_str=True, threshold=self.threshold)
                if batch:
                    for ev in chunk:
                        presence.request(ev.tenant, ev.key)
                for ev, scored in zip(chunk, picks, strict=True):
                    if not batch:
                        presence.request(ev.tenant, ev.key)
                    yield presence.pick(ev.tenant, scored, k)
                continue
            if budget is None:
                yield from cands.choose(rows.tobytes(), k, as_str=True, threshold=self.threshold,
                                        make=Prediction)
                continue
            picks = cands.choose(rows.tobytes(), k, as_str=True)
            for i, (ev, scored) in enumerate(zip(chunk, picks, strict=True)):
                # serve's drive, one event at a time: the request moves the rates and
                # the threshold, then the warms that pass it are told to the budget
                budget.request((ev.tenant, ev.key), self._markov(cands, i),
                               _next_keys(ev.key, k))
                threshold = budget.threshold
                keep = [Prediction(key, score) for key, score in scored if score >= threshold]
                if keep:
                    budget.warm(ev.tenant, [p.key for p in keep])
                yield keep

    def adopt_state(self, previous: WarmingStrategy) -> None:
        """Take over the streaming state of the strategy this one replaces (hot swap).

        From an ``LstmStrategy`` with the same feature spec (but for the delay its
        window tables start after, ``ahead_lead``, which the tracker takes on): its
        tracker (successor tables, last steps, newest rows), queued accesses, and its
        recurrent slots when the state tensors have the same shape (else tenants restart
        from zero state).
        From a ``Markov`` baseline (the fallback before the first model): its successor
        tables seed the tracker, so candidates exist right after the swap. Anything
        else is ignored. The online budget keeps its shadows across an LSTM swap.
        """
        if (isinstance(previous, LstmStrategy)
                and previous.spec.with_lead(self.spec.ahead_lead) == self.spec):
            self._tracker, self._events = previous._tracker, previous._events
            self._tracker.set_ahead_lead(self.spec.ahead_lead)
            self._gone = previous._gone
            mine, theirs = self._stepper, previous._stepper
            if (theirs.slots.states.h.shape == mine.slots.states.h.shape
                    and theirs.device == mine.device):
                mine.slots = theirs.slots
                mine.slots.on_evict = self._evicted
            # else: tenants keep their candidates; their slots start from zero state
            if previous.budget is not None and self.budget is not None:
                self.budget.adopt(previous.budget)
            if previous.presence is not None and self.presence is not None:
                self.presence = previous.presence  # the same cache
        elif isinstance(previous, Markov):
            tables = previous.tables
            for tenant in tables.tenants():
                self._tracker.seed(tenant, tables.rows(tenant))

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held for tenants now, by part: the tracker (successor tables, last steps,
        newest probabilities), the slot table, and the recurrent state tensors (fixed:
        ``max_state_slots`` slots). O(table entries): for scripts, not per batch."""
        slots = self._stepper.slots
        states = slots.states
        return {"tracker": self._tracker.memory_bytes(),
                "slot_table": slots.memory_bytes(),
                "state_tensors": (states.h.numel() + states.c.numel()) * states.h.element_size()}

    def table_stats(self) -> TableStats:
        """The tracker's successor tables (window tables included) against their
        memory budget (``spec.table_bytes``)."""
        return self._tracker.table_stats()

    def _threshold(self) -> float:
        return self.budget.threshold if self.budget is not None else self.threshold

    def _marks_k(self) -> int:
        """How many successors the tracker records per step for the Markov shadow (0:
        the step's rank candidates are already its top ``k``)."""
        return self._k if self.budget is not None and self._k > self.spec.ranks else 0

    def _markov(self, cands: Cands, i: int) -> list[str]:
        """What Markov warms after step ``i``: its top ``k`` successors (shadow budget)."""
        if self._k > self.spec.ranks:
            return list(cands.marks(i))
        return [str(c) for c in cands[i][1 : 1 + self._k] if c is not None]

    def _take_queued(self) -> list[AccessEvent]:
        """The accesses observed since the last step, less those of tenants forgotten
        since they were queued."""
        events, self._events = self._events, []
        if self._gone:  # forgotten since queued: drop what they did before
            gone, self._gone = self._gone, {}
            events = [ev for i, ev in enumerate(events) if i >= gone.get(ev.tenant, 0)]
        return events

    def _track(self) -> None:
        """Run the queued accesses through the tracker and the model (before a stream)."""
        events = self._take_queued()
        if not events:
            return
        batch = self._tracker.step_batch(events, keep=self.budget is not None,
                                         marks_k=self._marks_k())
        if self.budget is not None:
            assert batch.cands is not None
            for i, ev in enumerate(events):
                self.budget.request((ev.tenant, ev.key), self._markov(batch.cands, i),
                                    _next_keys(ev.key, self._k))
        self._advance(batch, last_only=True)

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop tenants' tracker state, queued accesses and slots."""
        queued = len(self._events)
        for tenant in tenants:
            self._tracker.forget(tenant)
            if queued:
                self._gone[tenant] = queued
            self._stepper.slots.release(tenant)

    def _evicted(self, tenant: str) -> None:
        """Its slot went to another tenant (LRU): its candidates and newest row go too."""
        self._tracker.forget(tenant)

    def _advance(self, batch: Batch, *, last_only: bool = False
                 ) -> list[tuple[Rows, Stepped]]:
        """The stepper's ``advance`` of ``batch`` (``model.stepper.Advanced``), the
        tracker told each tenant's newest probabilities; per group of tenants: its
        events' rows in the batch, and what the stepper computed for them."""
        out = []
        for sel, tenants, advanced in self._stepper.advance(batch, last_only=last_only):
            self._tracker.set_probs(tenants, advanced[2])
            out.append((sel, advanced))
        return out


def _next_keys(key: str, k: int) -> list[str]:
    """The keys ``nextkey`` warms after ``key`` (the baseline's own function)."""
    return [p.key for p in next_keys(key, k)]


def fit_strategy(train_events: list[AccessEvent], settings: Settings,
                 delay: int | None = None) -> WarmingStrategy:
    """Train on ``train_events`` and return a fresh strategy (empty online state), for
    warms that land ``delay`` requests late (default: ``model.train.offline_delay``)."""
    from stream_warmer.model.train import offline_delay, train_model

    trained = train_model(train_events, settings,
                          delay=offline_delay(settings.trainer) if delay is None else delay)
    return LstmStrategy(trained.model, trained.spec, trained.threshold, settings.model,
                        version="fit")
