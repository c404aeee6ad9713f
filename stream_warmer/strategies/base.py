"""The one interface every warming strategy implements (DESIGN §3).

A strategy *observes* each access of a tenant (in order), and when asked *predicts*
up to ``k`` keys that tenant will request next, each with a confidence in 0..1.
Serve calls ``observe`` for every event and ``predict`` once per micro-batch for
the tenants that had new events (on their newest window); the evaluator calls
``predict_stream``, whose default is observe-then-predict per event and which a
model-backed strategy may override to batch the work. Strategies keep bounded
state and drop a tenant's state on ``forget``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence

import msgspec

from stream_warmer.events import AccessEvent

BASELINE_VERSION = "baseline"


class Prediction(msgspec.Struct, frozen=True, gc=False):
    """One key to warm, with the strategy's confidence in 0..1 (a struct: the serve
    path builds one per warm, and a frozen dataclass costs several times as much)."""

    key: str
    score: float


class Window(msgspec.Struct, frozen=True):
    """A tenant's most recent accesses, oldest first (the newest is ``events[-1]``)."""

    tenant: str
    events: Sequence[AccessEvent]


class WarmingStrategy(ABC):
    """Base class of ``none``, ``popularity``, ``markov``, ``nextkey`` and ``lstm``."""

    name: str = "abstract"
    # True when ``predict`` needs only each window's newest event (cheap per event):
    # serve then asks about every event of a micro-batch, not only each tenant's newest
    per_event: bool = False

    @property
    def model_version(self) -> str:
        """The version stamped on warm commands (``baseline`` for the baselines)."""
        return BASELINE_VERSION

    @abstractmethod
    def observe(self, event: AccessEvent) -> None:
        """Learn from one access (called for every event, in per-tenant order)."""

    @abstractmethod
    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """Up to ``k`` predictions per window, best first, for the key after its newest."""

    def set_cache_capacity(self, capacity: int) -> None:  # noqa: B027 - optional hook
        """The capacity (objects, all tenants) of the cache this strategy warms.

        Called by the evaluator before replay and by serve from its settings; the
        default ignores it. A strategy whose predictions depend on it overrides this,
        and the evaluator then gives it one instance per cache size.
        """

    def release_floor(self) -> float | None:
        """Stop dropping warms whose score is below the strategy's own confidence floor,
        and return that floor (None: it has none it can give up; nothing changes).

        For the evaluator's iso-warm rows: the strategy then names its top k whatever
        their score, the strategy's own cache applies the floor as the strategy did (the
        same warms), and a ``WarmRateGate`` may hold it below the floor as well as above,
        so a strategy with a floor can be compared at a spend above its own rate.
        """
        return None

    def picking(self) -> tuple[WarmingStrategy, int] | None:
        """For the evaluator's frontier rows (``evaluate --threshold``) of a strategy
        whose warms depend on what it named before (the lstm's presence filter, whose
        shadow takes in what it names), so that a cut after the fact would not be what
        it does at a threshold: a new instance over the same model that names, best
        first and whatever their score, the ``n`` candidates it picks from, and ``n``.
        Each frontier cache then picks from them as the strategy would at its threshold
        (``evaluation.rows.PresenceThreshold``), all from one run of the model. None
        (the default): the evaluator cuts this strategy's named warms by their scores.
        """
        return None

    def forget(self, tenants: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Drop any per-tenant state of ``tenants`` (evicted or revoked)."""

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """For each event in order: observe it, then predict on the tenant's history.

        The window passed to ``predict`` holds only the newest event; strategies that
        need longer windows override this (the LSTM keeps its own streaming state).
        """
        for event in events:
            self.observe(event)
            yield self.predict([Window(event.tenant, (event,))], k)[0]
