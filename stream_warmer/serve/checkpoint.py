"""The serve loop's checkpoint, always in this order (at-least-once, see ``serve.app``):

1. flush the Redis sink (one pipelined round trip);
2. flush the producer (warm commands and dead letters delivered);
3. commit the stored offsets.

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
from confluent_kafka import KafkaException

from stream_warmer.errors import KafkaError, SinkUnavailableError
from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.outage import Outage
from stream_warmer.serve.sinks import Outbox
from stream_warmer.serve.stats import Offsets, RunStats

log = logging.getLogger(__name__)
PRODUCER_FLUSH_S = 10.0


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
        """Flush Redis, then the producer, then commit stored offsets; False if skipped."""
        engine = self._engine
        try:
            self._stats.commands += engine.flush_sink()
        except SinkUnavailableError as exc:
            self._outage.enter(exc, engine, self._consumer)
            return False
        outbox = self._outbox
        if outbox.failed:  # records lost: committing would skip their events for good
            if self._stop_reason is not None:
                return False
            self._stop_reason = (f"{outbox.failed} warm commands or dead letters were "
                                 f"not delivered: {outbox.last_error}")
            raise KafkaError(self._stop_reason)
        undelivered = outbox.flush(PRODUCER_FLUSH_S)
        if undelivered or outbox.failed:
            log.warning("checkpoint skipped: producer has not delivered yet",
                        extra={"undelivered": undelivered})
            return False
        self._commit(asynchronous=trigger == "interval")
        self._stats.checkpoints += 1
        self._metrics.checkpoints.labels(trigger).inc()
        return True

    def _commit(self, asynchronous: bool) -> None:
        """Commit the stored offsets (their side effects are flushed by now).

        Interval checkpoints do not wait for the broker: a synchronous commit stalled
        the loop ~7 ms (up to ~35 ms) every interval, a share of the latency tail. A
        failed async commit is logged (``on_commit``) and superseded by the next one;
        revoke and shutdown wait for theirs.
        """
        try:
            self._consumer.commit(asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args[0].code() == _KafkaErr._NO_OFFSET:
                return
            msg = f"commit failed: {exc}"
            raise KafkaError(msg) from exc

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
