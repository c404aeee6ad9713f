"""The baseline strategies: ``none``, ``popularity``, ``markov`` and ``nextkey``.

They are the cold-start fallback of ``serve`` and the yardsticks of ``evaluate``,
so they are cheap per event (the evaluator runs them over millions of events) and
their memory is bounded per tenant. Each overrides ``predict_stream`` with a loop
that skips building a ``Window`` per event; the results are the same as the
default observe-then-predict.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import islice

from stream_warmer_native import Markov as SuccessorTables

from stream_warmer.events import AccessEvent, is_ascii_digits
from stream_warmer.model.features import MAX_KEYS, TABLE_BYTES
from stream_warmer.model.tracker import TableStats
from stream_warmer.settings import StrategySettings
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window

UNBOUNDED = 1 << 62


class NoWarm(WarmingStrategy):
    """Never warms anything: the plain-LRU yardstick."""

    name = "none"
    nested_k = True

    def observe(self, event: AccessEvent) -> None:
        """Nothing to learn."""

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """No predictions for any window."""
        return [[] for _ in windows]

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """An empty list per event."""
        for _ in events:
            yield []


class _Counts:
    """Bounded, decaying key counts of one tenant (a Space-Saving style sketch)."""

    __slots__ = ("counts", "seen")

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.seen = 0


class Popularity(WarmingStrategy):
    """Warm the tenant's most requested keys (other than the one just requested).

    Counts are bounded (``popularity_top`` keys per tenant; a new key replaces the
    least counted one and inherits its count, as in Space-Saving) and decay (all
    halved every ``popularity_halflife_events`` events of the tenant) so that the
    ranking follows the recent workload. Score = count / total count held.
    """

    name = "popularity"
    per_event = True
    nested_k = True

    def __init__(self, max_keys: int = 64, halflife_events: int = 10_000) -> None:
        if max_keys < 1 or halflife_events < 1:
            msg = f"max_keys={max_keys} and halflife_events={halflife_events} must be >= 1"
            raise ValueError(msg)
        self._max_keys = max_keys
        self._halflife = halflife_events
        self._tenants: dict[str, _Counts] = {}

    def observe(self, event: AccessEvent) -> None:
        """Count the request, replacing the least counted key when full."""
        state = self._tenants.get(event.tenant)
        if state is None:
            state = self._tenants[event.tenant] = _Counts()
        counts = state.counts
        key = event.key
        if key in counts:
            counts[key] += 1.0
        elif len(counts) < self._max_keys:
            counts[key] = 1.0
        else:
            victim = min(counts, key=counts.__getitem__)
            counts[key] = counts.pop(victim) + 1.0
        state.seen += 1
        if state.seen % self._halflife == 0:
            state.counts = {k: c / 2 for k, c in counts.items() if c >= 1.0}

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """The ``k`` most counted keys of each window's tenant, minus its newest key."""
        return [self._top(w.tenant, w.events[-1].key if w.events else None, k) for w in windows]

    def _top(self, tenant: str, current: str | None, k: int) -> list[Prediction]:
        state = self._tenants.get(tenant)
        if state is None or not state.counts:
            return []
        counts = state.counts
        total = sum(counts.values())
        best = heapq.nlargest(k + 1, counts, key=counts.__getitem__)
        return [Prediction(key, counts[key] / total) for key in best if key != current][:k]

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop the counts of ``tenants``."""
        for tenant in tenants:
            self._tenants.pop(tenant, None)


class Markov(WarmingStrategy):
    """Per-tenant first-order successor table: after key x, warm x's top successors.

    Ranking: count, ties broken by which successor was seen first. Memory is bounded:
    all tenants' tables together within ``table_bytes`` (past it the least recently
    used key of any tenant, as a transition's source, is dropped), at most ``max_keys``
    keys per tenant (its least recently used dropped) and at most ``max_successors``
    successors per key (the least frequent, latest among ties, replaced by a new one);
    ``table_stats`` reports them (native/src/table.rs). Score = count / all
    transitions seen out of x. The top k are a prefix of the top k+1 (``nested_k``),
    which lets the evaluator serve several k from one run.

    The tables are native (``stream_warmer_native.Markov``, native/src/table.rs): the
    same implementation as the LSTM tracker's successor tables, which name its rank
    candidates and its budget's Markov shadow.
    """

    name = "markov"
    per_event = True
    nested_k = True

    def __init__(self, max_keys: int = MAX_KEYS, max_successors: int = 8,
                 table_bytes: int = TABLE_BYTES) -> None:
        if max_keys < 1 or max_successors < 1 or table_bytes < 1:
            msg = (f"max_keys={max_keys}, max_successors={max_successors} and "
                   f"table_bytes={table_bytes} must be >= 1")
            raise ValueError(msg)
        self.tables = SuccessorTables(max_keys, max_successors, table_bytes)

    def table_stats(self) -> TableStats:
        """The tables against their memory budget."""
        return TableStats(*self.tables.table_stats())

    def observe(self, event: AccessEvent) -> None:
        """Record the transition from the tenant's previous key to this one."""
        self.tables.observe(event.tenant, event.key)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """The top ``k`` successors of each window's newest key."""
        succ = self.tables.successors
        return [succ(w.tenant, w.events[-1].key, k, Prediction) if w.events else []
                for w in windows]

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """Observe each event, then predict the successors of its key (in chunks)."""
        it = iter(events)
        while chunk := list(islice(it, 4096)):
            yield from self.tables.stream(chunk, k, Prediction)

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop the tables of ``tenants``."""
        for tenant in tenants:
            self.tables.forget(tenant)


class NextKey(WarmingStrategy):
    """For an integer key x, warm x+1 ... x+k (nothing for other keys).

    Keys written with leading zeros keep their width ("007" -> "008"). Score of
    x+i is 1/i: the next block is the likeliest.
    """

    name = "nextkey"
    per_event = True
    nested_k = True

    def observe(self, event: AccessEvent) -> None:
        """Stateless."""

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        """x+1..x+k for each window's newest key when it is an integer."""
        return [next_keys(w.events[-1].key, k) if w.events else [] for w in windows]

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        """x+1..x+k per event."""
        for event in events:
            yield next_keys(event.key, k)


def next_keys(key: str, k: int) -> list[Prediction]:
    """What ``nextkey`` warms after ``key``: key+1 ... key+k, scored 1/i (integer keys
    only; leading zeros keep their width). The LSTM's budget shadow uses it too."""
    return list(_next_keys_cached(key, k))


@lru_cache(maxsize=1 << 16)  # pure; hot keys repeat, and Prediction objects are not free
def _next_keys_cached(key: str, k: int) -> tuple[Prediction, ...]:
    digits = key[1:] if key[:1] == "-" else key
    if not is_ascii_digits(digits):
        return ()
    value = int(key)
    if len(digits) > 1 and digits[0] == "0" and value >= 0:
        width = len(key)
        return tuple(Prediction(str(value + i).zfill(width), 1.0 / i) for i in range(1, k + 1))
    return tuple(Prediction(str(value + i), 1.0 / i) for i in range(1, k + 1))


def build(name: str, settings: StrategySettings) -> WarmingStrategy:
    """A baseline by name, bounded by ``settings``; ``ValueError`` for an unknown name.

    ``markov1`` is the Markov table of REFERENCE.md: the same ranking with no memory
    bounds (it grows with the distinct transitions; for offline evaluation only).
    """
    if name == "none":
        return NoWarm()
    if name == "popularity":
        return Popularity(settings.popularity_top, settings.popularity_halflife_events)
    if name == "markov":
        return Markov(settings.markov_max_keys_per_tenant, settings.markov_max_successors,
                      settings.markov_table_bytes)
    if name == "markov1":  # REFERENCE.md's markov1: no bounds (evaluation only)
        return Markov(UNBOUNDED, UNBOUNDED, UNBOUNDED)
    if name == "nextkey":
        return NextKey()
    msg = (f"unknown baseline strategy {name!r}; "
           "choose from none, popularity, markov, markov1, nextkey, pg, mithril")
    raise ValueError(msg)
