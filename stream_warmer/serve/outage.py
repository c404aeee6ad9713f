"""Redis unreachable: stop committing, pause, back off, rewind and resume.

While Redis is down nothing is handled: the consumer's partitions are paused, and
anything still delivered is only noted (where to rewind to). The events that had
been handled but not stored (their warm commands never reached Redis) are counted
as re-handled. When Redis answers again, the partitions resume and each is sought
back to its first unstored offset, so every event is handled again - none is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from stream_warmer.errors import SinkUnavailableError
from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.stats import Offsets, RunStats

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 0.1


class Outage:
    """The paused state of one app and the way out of it."""

    def __init__(
        self,
        topic: str,
        offsets: Offsets,
        metrics: ServeMetrics,
        stats: RunStats,
        *,
        clock: Callable[[], float],
        backoff_max_s: float,
    ) -> None:
        self._topic = topic
        self._offsets = offsets
        self._metrics = metrics
        self._stats = stats
        self._clock = clock
        self._backoff_max_s = backoff_max_s
        self._backoff_s = FIRST_BACKOFF_S
        self._retry_at = 0.0
        self.active = False

    def enter(self, exc: SinkUnavailableError, engine: WarmEngine, consumer: Any) -> None:
        """Drop queued work, pause every assigned partition, schedule the first retry."""
        self.active = True
        dropped = engine.abandon()
        rehandle = self._offsets.unstored_count()
        self._stats.rehandled += rehandle
        self._metrics.rehandled.inc(rehandle)
        self._metrics.redis_up.set(0)
        self._metrics.paused.set(1)
        self._backoff_s = FIRST_BACKOFF_S
        self._retry_at = self._clock() + self._backoff_s
        consumer.pause(consumer.assignment())
        log.warning("redis unavailable: paused", extra={
            "error": str(exc), "tenants": dropped, "rehandle": rehandle})

    def maybe_recover(self, engine: WarmEngine, consumer: Any) -> None:
        """When the backoff has passed, ping Redis; on an answer resume and rewind."""
        if not self.active or self._clock() < self._retry_at:
            return
        if not engine.sink_ready():
            self._backoff_s = min(self._backoff_s * 2, self._backoff_max_s)
            self._retry_at = self._clock() + self._backoff_s
            consumer.pause(consumer.assignment())  # partitions assigned meanwhile too
            return
        consumer.resume(consumer.assignment())
        for partition, offset in self._offsets.rewind().items():
            try:
                consumer.seek(TopicPartition(self._topic, partition, offset))
            except KafkaException as exc:  # no longer ours: its next owner re-reads it
                log.warning("rewind failed", extra={"partition": partition, "error": str(exc)})
        self.active = False
        self._metrics.redis_up.set(1)
        self._metrics.paused.set(0)
        log.info("redis back: resumed")
