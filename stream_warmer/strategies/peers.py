"""The published peers of PEERS.md as strategies: what they share, and ``pg``.

``pg`` is the probability graph (Griffioen & Appleton, USENIX Summer '94) and
``mithril`` (``strategies.mithril``) the association miner of Yang et al. (SoCC '17),
both written from the papers' descriptions. What they share (``PeerStrategy``):

- **Per tenant.** Windows, counts and clocks are kept per tenant (keys are scoped to
  their tenant and a warm names a key of the requesting tenant). PEERS.md's harness
  learned from the one interleaved stream, so there "the next 20 requests" were 20
  requests of all tenants; here they are 20 requests of the same tenant. On a trace
  with one tenant (arc_oltp, cloudphysics_vm) the two are the same.
- **Presence filter.** PEERS.md's harness inserted the first k *uncached* candidates.
  A strategy here names keys only, and the evaluator keeps the first k it names, so
  naming a key the cache already holds wastes a slot. When told the warmed cache's
  capacity (``set_cache_capacity``: the evaluator always tells it, serve when
  ``model.cache_capacity`` is set) a peer names the first k candidates a shadow of the
  cache does not hold (``strategies.presence``). With no capacity it skips the keys of
  the tenant's last ``lookahead`` requests instead: those are almost surely cached.
  Because the filter depends on what was named at this k, a peer is not ``nested_k``
  and the evaluator runs one instance per (k, f).
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence

from stream_warmer.events import AccessEvent
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.presence import Presence


class PeerStrategy(WarmingStrategy):
    """Per-tenant recent window, presence filter and the observe/predict plumbing.

    A subclass learns in ``_learn`` (the tenant's previous ``lookahead`` keys at hand)
    and ranks candidates in ``_candidates``; this class picks the first k of them
    that are worth warming (module docstring).
    """

    nested_k = False  # the presence filter depends on what was named at this k
    per_event = True  # a request's warms need only its key: serve asks about every event

    def __init__(self, lookahead: int) -> None:
        if lookahead < 1:
            msg = f"lookahead={lookahead} must be >= 1"
            raise ValueError(msg)
        self._lookahead = lookahead
        self._presence: Presence | None = None
        self._recent: dict[str, deque[str]] = {}

    def set_cache_capacity(self, capacity: int) -> None:
        """Shadow a cache of ``capacity`` objects (0: no shadow, skip recent keys)."""
        self._presence = Presence(capacity) if capacity > 0 else None

    def observe(self, event: AccessEvent) -> None:
        """Request the key in the shadow, learn from it, then slide the tenant's window."""
        tenant, key = event.tenant, event.key
        if self._presence is not None:
            self._presence.request(tenant, key)
        recent = self._recent.get(tenant)
        if recent is None:
            recent = self._recent[tenant] = deque(maxlen=self._lookahead)
        self._learn(tenant, key, recent)
        recent.append(key)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """Up to ``k`` warms after each window's newest key."""
        return [self._warms(w.tenant, w.events[-1].key, k) if w.events else [] for w in windows]

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """Observe each event, then name up to ``k`` warms after its key."""
        for event in events:
            self.observe(event)
            yield self._warms(event.tenant, event.key, k)

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop the tenants' windows and tables (the shadow models the cache: it stays)."""
        for tenant in tenants:
            self._recent.pop(tenant, None)
            self._drop(tenant)

    def held(self) -> dict[str, int]:
        """What is held now (tenants, table entries, shadow pairs): for metrics and tests."""
        return {"tenants": len(self._recent), **self._held(),
                "shadow": len(self._presence) if self._presence is not None else 0}

    def _warms(self, tenant: str, key: str, k: int) -> list[Prediction]:
        """The first ``k`` candidates not (believed) cached; the shadow takes them in."""
        if k < 1:
            return []
        if self._presence is None:
            return self._not_recent(tenant, key, k)
        return self._presence.pick(tenant, self._candidates(tenant, key), k)

    def _not_recent(self, tenant: str, key: str, k: int) -> list[Prediction]:
        """The first ``k`` candidates not among the tenant's last ``lookahead`` keys."""
        picked: list[Prediction] = []
        recent = self._recent.get(tenant, ())
        for candidate, score in self._candidates(tenant, key):
            if candidate != key and candidate not in recent:
                picked.append(Prediction(candidate, score))
                if len(picked) >= k:
                    break
        return picked

    @abstractmethod
    def _learn(self, tenant: str, key: str, recent: deque[str]) -> None:
        """Learn from a request for ``key`` (``recent``: the tenant's keys before it)."""

    @abstractmethod
    def _candidates(self, tenant: str, key: str) -> Iterable[tuple[str, float]]:
        """(key, score) to warm after a request for ``key``, best first (``_warms`` filters)."""

    @abstractmethod
    def _drop(self, tenant: str) -> None:
        """Forget the tenant's learned tables."""

    @abstractmethod
    def _held(self) -> dict[str, int]:
        """Entries held in the learned tables, by table."""


class _Arcs:
    """Arc counts out of one key: successor -> count (first seen first) and their total."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.total = 0  # arcs counted out of this key, evicted successors included


class ProbabilityGraph(PeerStrategy):
    """PG: successors within a lookahead window, warmed above a probability threshold.

    Each request for y adds one arc x->y for each of the tenant's previous
    ``lookahead`` requests x (a key that is twice in the window adds two; no x->x).
    The estimator is the paper's: p(x->y) = count(x->y) / all arcs counted out of x
    (evicted successors included), so a y that always comes within the window after x
    gets about 1/lookahead; ``threshold`` (strict) is on p, and the default 0.0025 is
    the classic 5% spread over a 20-request window, as PEERS.md ran it. Candidates are
    ranked by count (ties: first seen first). The score is ``min(1, lookahead x p)``,
    about the chance that y comes within the window after x (0.05 at the threshold).

    Memory per tenant: at most ``max_keys`` keys with arcs out (the least recently
    requested dropped) and ``max_successors`` successors per key; PEERS.md's PG had
    unlimited metadata. A new successor of a full key first drops the lower half
    (least counted first, the oldest of equal counts first), so that newcomers have
    time to recur: dropping the one newest successor instead, as ``markov``'s table
    does, let only long-established successors stay (arc_oltp, f=0.01, k=1: 0.500 at
    32 successors, 0.525 at 128, 0.532 halving at 64; unbounded 0.553). Unlike
    ``markov``'s table, which keeps each key's successors ranked as it counts (one arc
    per event), this one ranks at prediction (``lookahead`` arcs per event, one
    prediction): per event O(lookahead) counter updates, amortised, and one sort of at
    most ``max_successors``.
    """

    name = "pg"

    def __init__(self, lookahead: int = 20, threshold: float = 0.0025,
                 max_keys: int = 50_000, max_successors: int = 64) -> None:
        super().__init__(lookahead)
        if not 0.0 <= threshold < 1.0 or max_keys < 1 or max_successors < 1:
            msg = (f"threshold={threshold} must be in [0, 1), max_keys={max_keys} and "
                   f"max_successors={max_successors} >= 1")
            raise ValueError(msg)
        self._threshold = threshold
        self._max_keys = max_keys
        self._max_succ = max_successors
        self._graphs: dict[str, OrderedDict[str, _Arcs]] = {}

    def _learn(self, tenant: str, key: str, recent: deque[str]) -> None:
        """One arc from each key of the window before ``key`` to ``key``."""
        graph = self._graphs.get(tenant)
        if graph is None:
            graph = self._graphs[tenant] = OrderedDict()
        elif key in graph:
            graph.move_to_end(key)  # least recently *requested* keys go first
        max_keys, max_succ = self._max_keys, self._max_succ
        for prev in recent:
            if prev == key:
                continue
            arcs = graph.get(prev)
            if arcs is None:
                arcs = graph[prev] = _Arcs()
                if len(graph) > max_keys:
                    graph.popitem(last=False)
            arcs.total += 1
            counts = arcs.counts
            count = counts.get(key)
            if count is not None:
                counts[key] = count + 1
                continue
            if len(counts) >= max_succ:
                _halve(counts, max_succ // 2)
            counts[key] = 1

    def _candidates(self, tenant: str, key: str) -> Iterator[tuple[str, float]]:
        """``key``'s successors with p above the threshold, most counted first."""
        graph = self._graphs.get(tenant)
        arcs = graph.get(key) if graph is not None else None
        if arcs is None:
            return
        counts, total = arcs.counts, arcs.total
        floor = self._threshold * total
        above = [s for s, count in counts.items() if count > floor]
        above.sort(key=counts.__getitem__, reverse=True)  # stable: ties stay first seen first
        scale = self._lookahead / total
        for s in above:
            yield s, min(1.0, counts[s] * scale)

    def _drop(self, tenant: str) -> None:
        self._graphs.pop(tenant, None)

    def _held(self) -> dict[str, int]:
        graphs = self._graphs.values()
        return {"keys": sum(len(g) for g in graphs),
                "arcs": sum(len(a.counts) for g in graphs for a in g.values())}


def _halve(counts: dict[str, int], keep: int) -> None:
    """Keep the ``keep`` most counted successors (of equal counts, the newest)."""
    ascending = sorted(counts, key=counts.__getitem__)  # stable: oldest first among equals
    for successor in ascending[: len(ascending) - keep]:
        del counts[successor]
