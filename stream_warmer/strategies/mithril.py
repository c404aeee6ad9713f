"""``mithril``: sporadic association mining for warming (Yang et al., SoCC '17).

Written from the paper's description. Per tenant, every request gets a logical
timestamp (the tenant's request count). A key's timestamps are *recorded* until it has
``min_support`` of them; then it moves to the *mining table*, where it gathers more
up to ``max_support`` (one more and it is frequent, not sporadic: dropped, and it
starts over in the recording table). When the mining table holds
``mining_threshold`` keys it is *mined* and cleared: sorted by first timestamp, each
key is compared with the keys whose first timestamp is at most ``lookahead`` later;
two keys with the same number n of timestamps are associated when at least
``confidence`` x n of their paired timestamps (i-th with i-th) are within
``lookahead`` of each other (the first pair always is). The association goes from
the key that came first in most pairs to the other (both ways on a tie), into the
*prefetching table*: per key its associated keys with the mining round that found
them and their mean distance (in requests), at most ``max_associations`` (past that
the oldest round's farthest goes). A request for x warms x's associations nearest
first (ties: the newest round first; score: the share of close pairs), through the
presence filter of ``strategies.peers``: the nearest is the one needed soonest, and
the one a small cache would evict last.

Bookkeeping that differs from PEERS.md's run of the authors' implementation: every
request is recorded and timestamps count the tenant's requests (a strategy here is
not told hits and misses; recording only the shadow's misses measured no better);
tables, clocks and minings are per tenant, so a tenant with fewer sporadic keys than
``mining_threshold`` never mines (PEERS.md's run mined the interleaved stream of all
tenants); the metadata bound is a count of keys, not bytes; associations are ranked
nearest first. As there, an unused warm gets no second chance (``cycle-time=1``).

Memory per tenant: at most ``max_keys`` keys in the recording table (fewer than
``min_support`` timestamps each, least recently requested dropped),
``mining_threshold`` in the mining table (at most ``max_support`` each) and
``max_keys`` keys with associations (least recently used dropped) of at most
``max_associations`` each. Work per event: O(1), plus mining, which costs
O(lookahead) per key mined (first timestamps are distinct, so at most ``lookahead``
keys fall in one key's window) and a sort.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator

from stream_warmer.strategies.peers import PeerStrategy

_Link = tuple[int, float, float]  # (mining round, mean distance, share of close pairs)


class _Tables:
    """One tenant's clock, recording, mining and prefetching tables."""

    __slots__ = ("associations", "clock", "mining", "recording", "rounds")

    def __init__(self) -> None:
        self.clock = 0
        self.rounds = 0  # minings so far
        self.recording: OrderedDict[str, list[int]] = OrderedDict()
        self.mining: dict[str, list[int]] = {}
        # source -> target -> (round, mean distance, share of close pairs)
        self.associations: OrderedDict[str, dict[str, _Link]] = OrderedDict()


class Mithril(PeerStrategy):
    """Mine keys requested close together a few times; warm the associated keys."""

    name = "mithril"

    def __init__(self, lookahead: int = 20, *, min_support: int = 2, max_support: int = 8,
                 confidence: float = 1.0, mining_threshold: int = 256,
                 max_keys: int = 50_000, max_associations: int = 8) -> None:
        super().__init__(lookahead)
        if not 1 <= min_support <= max_support or not 0.0 < confidence <= 1.0:
            msg = (f"need 1 <= min_support={min_support} <= max_support={max_support} "
                   f"and 0 < confidence={confidence} <= 1")
            raise ValueError(msg)
        if min(mining_threshold, max_keys, max_associations) < 1:
            msg = (f"mining_threshold={mining_threshold}, max_keys={max_keys} and "
                   f"max_associations={max_associations} must be >= 1")
            raise ValueError(msg)
        self._min_support, self._max_support = min_support, max_support
        self._confidence = confidence
        self._mining_threshold = mining_threshold
        self._max_keys, self._max_assoc = max_keys, max_associations
        self._tables: dict[str, _Tables] = {}

    def _learn(self, tenant: str, key: str, recent: deque[str]) -> None:
        """Timestamp the request; promote the key to the mining table at min support."""
        tables = self._tables.get(tenant)
        if tables is None:
            tables = self._tables[tenant] = _Tables()
        now = tables.clock
        tables.clock = now + 1
        times = tables.mining.get(key)
        if times is not None:
            if len(times) >= self._max_support:
                del tables.mining[key]  # frequent, not sporadic
            else:
                times.append(now)
            return
        recording = tables.recording
        times = recording.get(key)
        if times is None:
            times = recording[key] = [now]
            if len(recording) > self._max_keys:
                recording.popitem(last=False)
        else:
            recording.move_to_end(key)
            times.append(now)
        if len(times) >= self._min_support:
            del recording[key]
            tables.mining[key] = times
            if len(tables.mining) >= self._mining_threshold:
                self._mine(tables)

    def _mine(self, tables: _Tables) -> None:
        """Pair up the mining table's keys (module docstring), then clear it."""
        entries = sorted(tables.mining.items(), key=lambda item: item[1][0])
        tables.mining = {}
        tables.rounds += 1
        lookahead = self._lookahead
        for i, (a, times_a) in enumerate(entries):
            first, n = times_a[0], len(times_a)
            for j in range(i + 1, len(entries)):
                b, times_b = entries[j]
                if times_b[0] - first > lookahead:
                    break
                if len(times_b) == n:
                    self._relate(tables, a, times_a, b, times_b)

    def _relate(self, tables: _Tables, a: str, times_a: list[int],
                b: str, times_b: list[int]) -> None:
        """Associate ``a`` and ``b`` when enough paired timestamps are close."""
        lookahead, n = self._lookahead, len(times_a)
        close = sum(1 for x, y in zip(times_a, times_b, strict=True) if abs(x - y) <= lookahead)
        if close < self._confidence * n:
            return
        later = sum(1 for x, y in zip(times_a, times_b, strict=True) if y > x)
        gap = sum(abs(x - y) for x, y in zip(times_a, times_b, strict=True)) / n
        link = (tables.rounds, gap, close / n)
        if 2 * later >= n:
            self._associate(tables, a, b, link)
        if 2 * later <= n:
            self._associate(tables, b, a, link)

    def _associate(self, tables: _Tables, source: str, target: str, link: _Link) -> None:
        """Add (or renew) ``source`` -> ``target``; bounded (module docstring)."""
        table = tables.associations
        row = table.get(source)
        if row is None:
            row = table[source] = {}
            if len(table) > self._max_keys:
                table.popitem(last=False)
        else:
            table.move_to_end(source)
        row[target] = link
        if len(row) > self._max_assoc:
            del row[min(row, key=lambda t: (row[t][0], -row[t][1]))]

    def _candidates(self, tenant: str, key: str) -> Iterator[tuple[str, float]]:
        """``key``'s associations, nearest first (ties: newest round first)."""
        tables = self._tables.get(tenant)
        row = tables.associations.get(key) if tables is not None else None
        if tables is None or not row:
            return
        tables.associations.move_to_end(key)
        for target in sorted(row, key=lambda t: (row[t][1], -row[t][0])):
            yield target, row[target][2]

    def _drop(self, tenant: str) -> None:
        self._tables.pop(tenant, None)

    def _held(self) -> dict[str, int]:
        tables = self._tables.values()
        return {"recording": sum(len(t.recording) for t in tables),
                "mining": sum(len(t.mining) for t in tables),
                "associated": sum(len(t.associations) for t in tables),
                "associations": sum(len(r) for t in tables for r in t.associations.values())}
