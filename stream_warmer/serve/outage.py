"""Redis unreachable: stop committing, pause, back off, rewind and resume.

While Redis is down nothing is handled: the consumer's partitions are paused, and
anything still delivered is only noted (where to rewind to). The events that had
been handled but not stored (their warm commands never reached Redis) are counted
as re-handled. When Redis answers again, the partitions resume and each is sought
back to its first unstored offset, so every event is handled again - none is lost.

"Down" is any reply ``redisfaults.unavailable`` names (no answer, a replica after a
failover, OOM, a busy script, loading), and the probe is a write (``RedisSink.ping``).
Retries back off as the loader's do (``stream_warmer.backoff.Backoff``): exponentially
with jitter (each wait drawn from the upper half of the doubled backoff, so replicas
paused by one outage do not probe in step); an outage that comes back within
``backoff_max_s`` of a recovery (a Redis that answers the probe but fails the writes)
goes on backing off from where it was instead of starting over.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from stream_warmer.backoff import Backoff
from stream_warmer.errors import SinkUnavailableError
from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.stats import Offsets, RunStats

log = logging.getLogger(__name__)


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
        rng: random.Random | None = None,
    ) -> None:
        self._topic = topic
        self._offsets = offsets
        self._metrics = metrics
        self._stats = stats
        self._clock = clock
        self._backoff = Backoff(backoff_max_s, rng=rng)
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
        now = self._clock()
        self._retry_at = now + self._backoff.start(now)
        consumer.pause(consumer.assignment())
        log.warning("redis unavailable: paused", extra={
            "error": str(exc), "tenants": dropped, "rehandle": rehandle})

    def maybe_recover(self, engine: WarmEngine, consumer: Any) -> None:
        """When the backoff has passed, ping Redis; on an answer resume and rewind."""
        if not self.active or self._clock() < self._retry_at:
            return
        if not engine.sink_ready():
            self._retry_at = self._clock() + self._backoff.again()
            consumer.pause(consumer.assignment())  # partitions assigned meanwhile too
            return
        consumer.resume(consumer.assignment())
        for partition, offset in self._offsets.rewind().items():
            try:
                consumer.seek(TopicPartition(self._topic, partition, offset))
            except KafkaException as exc:  # no longer ours: its next owner re-reads it
                log.warning("rewind failed", extra={"partition": partition, "error": str(exc)})
        self.active = False
        self._backoff.recovered(self._clock())
        self._metrics.redis_up.set(1)
        self._metrics.paused.set(0)
        log.info("redis back: resumed")
