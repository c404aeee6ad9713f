"""The serve loop's checkpoint, always in this order (at-least-once, see ``serve.app``):

1. snapshot the stored offsets (every warm command and dead letter of their events
   is written to Redis or queued in the producer by now);
2. flush the Redis sink: nothing to do in the normal course, since each micro-batch
   is written to Redis synchronously when it flushes; a guard for commands a failed
   flush left buffered;
3. flush the producer (warm commands and dead letters delivered);
4. commit the snapshot, as explicit offsets: never what librdkafka holds as stored
   when its thread gets to the commit, which may already cover later events whose
   records are still in the producer's queue.

A checkpoint whose producer has not delivered everything commits nothing (the next
one tries again); one with nothing new to commit does not wait for the producer.
The interval checkpoint waits for the producer at most ``INTERVAL_FLUSH_S`` and,
while the producer stays behind (a broker outage), only looks without waiting,
except on a few probes spaced further and further apart: the loop goes on serving
instead of stalling ``FINAL_FLUSH_S`` every interval. Revoke and shutdown
checkpoints wait up to ``FINAL_FLUSH_S`` (their commit is the last chance before
another replica or a restart re-reads).

Interval checkpoints also do the housekeeping (idle tenants evicted, unresolved warms
expired, metrics published) and, with ``batch.gc_freeze``, move everything that
survived into the GC's permanent generation.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError as _KafkaErr
from confluent_kafka import KafkaException, TopicPartition

from stream_warmer.errors import KafkaError, SinkUnavailableError
from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.outage import Outage
from stream_warmer.serve.outbox import Outbox
from stream_warmer.serve.stats import Offsets, RunStats

log = logging.getLogger(__name__)
# delivery takes a few ms (linger 2 ms + one produce round trip); longer means the
# broker is slow or gone, and the loop should not wait for it every interval
INTERVAL_FLUSH_S = 0.25
FINAL_FLUSH_S = 10.0  # revoke and shutdown
# while behind, the interval checkpoint waits only after 1, 2, 4, 8 and 16 skipped
# intervals, then every 16th; the others look without waiting
PROBE_EVERY_MAX = 16


class Checkpointer:
    """Runs checkpoints for one serve app (module docstring); ``run`` for any trigger."""

    def __init__(self, engine: WarmEngine, outbox: Outbox, consumer: Any, outage: Outage, *,
                 metrics: ServeMetrics, stats: RunStats, offsets: Offsets, topic: str,
                 interval_s: float, gc_freeze: bool, clock: Callable[[], float]) -> None:
        self._engine, self._outbox, self._consumer = engine, outbox, consumer
        self._outage, self._metrics, self._stats = outage, metrics, stats
        self._offsets, self._topic = offsets, topic
        self._interval_s, self._gc_freeze, self._clock = interval_s, gc_freeze, clock
        self._next = clock() + interval_s
        self._behind = 0  # interval checkpoints skipped in a row: producer not delivered
        self._stop_reason: str | None = None  # set once commits must never happen again

    def maybe(self) -> None:
        """The interval checkpoint, when it is due and Redis answers."""
        now = self._clock()
        if self._outage.active or now < self._next:
            return
        self._next = now + self._interval_s
        self.housekeep(now)
        self.run("interval")
        if self._gc_freeze:
            gc.freeze()

    def run(self, trigger: str) -> bool:
        """Snapshot, flush Redis, then the producer, then commit the snapshot; False if
        nothing was committed (Redis down, or the producer has not delivered yet)."""
        snapshot = self._offsets.to_commit()
        engine = self._engine
        try:
            self._stats.commands += engine.flush_sink()
        except SinkUnavailableError as exc:
            self._outage.enter(exc, engine, self._consumer)
            return False
        if not snapshot:  # nothing new to commit: no reason to wait for the producer
            self._check_failed()
            return True
        if not self._delivered(trigger):
            return False
        self._commit(snapshot, asynchronous=trigger == "interval")
        self._stats.checkpoints += 1
        self._metrics.checkpoints.labels(trigger).inc()
        return True

    def _check_failed(self) -> bool:
        """Raise once when records were lost (committing would skip their events for
        good); True while commits are stopped for that reason."""
        outbox = self._outbox
        if not outbox.failed:
            return False
        if self._stop_reason is not None:
            return True
        self._stop_reason = (f"{outbox.failed} warm commands or dead letters were "
                             f"not delivered: {outbox.last_error}")
        raise KafkaError(self._stop_reason)

    def _delivered(self, trigger: str) -> bool:
        """Flush the producer for as long as ``trigger`` may wait; True once all is delivered."""
        if self._check_failed():
            return False
        outbox = self._outbox
        wait = self._flush_wait(trigger)
        started = self._clock()
        undelivered = outbox.flush(wait)
        self._metrics.checkpoint_flush.labels(trigger).observe(self._clock() - started)
        if undelivered or outbox.failed:
            if trigger == "interval":
                self._behind += 1
            self._metrics.checkpoints_skipped.labels(trigger).inc()
            log.warning("checkpoint skipped: producer has not delivered yet",
                        extra={"trigger": trigger, "undelivered": undelivered,
                               "waited_s": wait})
            return False
        if trigger == "interval":
            self._behind = 0
        return True

    def _flush_wait(self, trigger: str) -> float:
        if trigger != "interval":
            return FINAL_FLUSH_S
        behind = self._behind
        probe = (behind & (behind - 1)) == 0 or behind % PROBE_EVERY_MAX == 0  # 0, 1, 2, 4..
        return INTERVAL_FLUSH_S if probe else 0.0

    def _commit(self, snapshot: dict[int, int], asynchronous: bool) -> None:
        """Commit ``snapshot`` (their side effects are flushed by now).

        Interval checkpoints do not wait for the broker: a synchronous commit stalled
        the loop ~7 ms (up to ~35 ms) every interval, a share of the latency tail. An
        asynchronous commit is confirmed (or logged as failed) by ``CommitReport``; what
        is not confirmed is committed again by the next checkpoint. Revoke and shutdown
        wait for theirs.
        """
        if not snapshot:
            return
        offsets = [TopicPartition(self._topic, p, o) for p, o in snapshot.items()]
        try:
            done = self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args[0].code() == _KafkaErr._NO_OFFSET:
                return
            msg = f"commit failed: {exc}"
            raise KafkaError(msg) from exc
        failed = []
        for tp in done or ():
            if tp.error is None:
                self._offsets.confirm(tp.partition, tp.offset)
            else:
                failed.append(tp.partition)
        if failed:  # committed again by the next checkpoint, or re-read by the next owner
            log.warning("offset commit failed", extra={"partitions": failed})

    def housekeep(self, now: float) -> None:
        """Evict idle tenants, expire unresolved warms, publish the metrics."""
        engine = self._engine
        engine.forget(engine.windows.evict_idle(now))
        self._metrics.expired_warms.inc(engine.precision.expire(now))
        self.publish()

    def publish(self) -> None:
        """Copy counters, gauges and lag into the metrics."""
        self._stats.publish(self._metrics, self._engine, self._consumer, self._topic,
                            self._offsets)


class CommitReport:
    """``on_commit`` of the consumer: confirms committed offsets into ``Offsets`` and logs
    failures. A failed (interval) commit is committed again by the next checkpoint, so
    nothing is skipped."""

    def __init__(self, offsets: Offsets, topic: str) -> None:
        self._offsets, self._topic = offsets, topic

    def __call__(self, err: Any, partitions: list[TopicPartition]) -> None:
        """Called from the consumer's poll for every commit, asynchronous or not."""
        if err is not None and err.code() == _KafkaErr._NO_OFFSET:
            return
        failed = [tp.partition for tp in partitions if tp.error is not None]
        if err is not None or failed:
            log.warning("offset commit failed", extra={"error": str(err), "partitions": failed})
        if err is not None:
            return
        for tp in partitions:
            if tp.error is None and tp.topic == self._topic:
                self._offsets.confirm(tp.partition, tp.offset)
