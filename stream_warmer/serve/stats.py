"""Book-keeping of the serve loop: offsets per partition, run counters, metric publishing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException

from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics


class Offsets:
    """Per partition: the next offset to consume, the first one not yet stored, the
    offset stored last (what a checkpoint may commit) and the one confirmed committed.

    A checkpoint commits an explicit snapshot of the stored offsets (``to_commit``),
    taken before it flushes: librdkafka reads its own stored offsets on its thread
    whenever it gets to an asynchronous commit, and by then the loop may have stored
    offsets of events whose warm commands are not delivered yet.
    """

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self._unstored: dict[int, int] = {}
        self._stored: dict[int, int] = {}
        self._committed: dict[int, int] = {}

    def consumed(self, partition: int, offset: int) -> None:
        """A message at ``offset`` was consumed (handled, or held back)."""
        if partition not in self._unstored:
            self._unstored[partition] = offset
        self._next[partition] = offset + 1

    def next_offset(self, partition: int) -> int | None:
        """The offset after the last consumed one, if any was consumed."""
        return self._next.get(partition)

    def take_unstored(self) -> dict[int, int]:
        """Offsets to store (next offset per partition consumed since the last store)."""
        out = {p: self._next[p] for p in self._unstored}
        self._unstored.clear()
        return out

    def stored(self, offsets: dict[int, int]) -> None:
        """``store_offsets`` took these (next offset per partition)."""
        self._stored.update(offsets)

    def to_commit(self) -> dict[int, int]:
        """The stored offsets not yet confirmed committed: a snapshot for one commit."""
        done = self._committed
        return {p: o for p, o in self._stored.items() if done.get(p) != o}

    def confirm(self, partition: int, offset: int) -> None:
        """The broker acknowledged a commit of ``offset`` (ignored for dropped partitions)."""
        if partition in self._stored and offset > self._committed.get(partition, -1):
            self._committed[partition] = offset

    def unstored_count(self) -> int:
        """How many consumed events are not covered by a stored offset."""
        return sum(self._next[p] - first for p, first in self._unstored.items())

    def rewind(self) -> dict[int, int]:
        """Where to seek to re-handle what was not stored; forgets it (it is consumed again)."""
        out = dict(self._unstored)
        self._unstored.clear()
        for partition, offset in out.items():
            self._next[partition] = offset
        return out

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions (their unstored events are re-handled by the next owner,
        and no later commit of this replica names them)."""
        for partition in partitions:
            for book in (self._unstored, self._next, self._stored, self._committed):
                book.pop(partition, None)


@dataclass
class RunStats:
    """What one ``run`` did.

    ``first_at``/``last_at``: clock times of the first/last poll batch handled;
    ``finished_at``: after the final checkpoint (before the consumer closes).
    """

    consumed: int = 0
    events: int = 0
    bad: int = 0
    commands: int = 0
    rehandled: int = 0
    checkpoints: int = 0
    first_at: float | None = None
    last_at: float | None = None
    finished_at: float | None = None

    def mark(self, now: float) -> None:
        """A poll batch was handled at ``now``."""
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    def summary(self) -> dict[str, Any]:
        """The counters, for a log line."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def publish(self, metrics: ServeMetrics, engine: WarmEngine, consumer: Any, topic: str,
                offsets: Offsets) -> None:
        """Set the gauges from the engine (its counts are read at each scrape:
        ``metrics.EngineCounts``), and the lag per partition."""
        metrics.tenants_held.set(len(engine.windows))
        for name, size in bounded_sizes(engine).items():
            metrics.bounded_size.labels(name).set(size)
        precision = engine.precision.precision()
        if precision is not None:
            metrics.precision.set(precision)
        tables = getattr(engine.strategy, "table_stats", None)  # markov, lstm
        if tables is not None:
            metrics.set_tables(tuple(tables()))
        check = getattr(engine.strategy, "precision_check", None)
        if check is not None:
            metrics.set_precision(check.active, check.agreement)
        _publish_lag(metrics, consumer, topic, offsets)


def bounded_sizes(engine: WarmEngine) -> dict[str, int]:
    """Entries held now by each bounded map of the engine (bounds: ``wiring.bounds``)."""
    policy, precision = engine.policy, engine.precision
    # the policy and the tracker expose no sizes of their maps: read them directly
    return {"windows": len(engine.windows), "batcher": len(engine.batcher),
            "policy_dedup": len(policy._dedup), "policy_budgets": len(policy._buckets),
            "policy_pending": len(policy.pending), "precision_outstanding": len(precision),
            "precision_tenants": len(precision._tenants)}


def _publish_lag(metrics: ServeMetrics, consumer: Any, topic: str, offsets: Offsets) -> None:
    for tp in consumer.assignment():
        if tp.topic != topic:
            continue
        nxt = offsets.next_offset(tp.partition)
        try:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:  # nothing fetched from it yet
            continue
        if nxt is not None and high >= 0:
            metrics.lag.labels(str(tp.partition)).set(max(0, high - nxt))
