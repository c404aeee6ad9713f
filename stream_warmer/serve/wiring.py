"""How a serve app is put together: clients, their configs, the engine, signal handlers."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from stream_warmer.errors import ConfigError
from stream_warmer.events import is_ascii_digits
from stream_warmer.serve.batcher import MicroBatcher
from stream_warmer.serve.engine import LatencyObserver, WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.policy import WarmPolicy
from stream_warmer.serve.precision import PrecisionTracker
from stream_warmer.serve.sinks import KafkaSink, RedisSink, redis_client
from stream_warmer.serve.windows import TenantWindows
from stream_warmer.settings import Settings
from stream_warmer.strategies.base import WarmingStrategy

log = logging.getLogger(__name__)
CommitCallback = Callable[[Any, list[TopicPartition]], None]
# bounds of the policy's dedup map and the precision tracker's outstanding warms
MAX_DEDUP = 1_000_000
MAX_OUTSTANDING = 1_000_000
# what librdkafka adds to key + value when it checks message.max.bytes (a v2 record's
# framing is well under this)
RECORD_OVERHEAD_BYTES = 1024


class Clients:
    """Factories of the outside world; tests replace them with fakes."""

    def consumer(self, conf: dict[str, Any]) -> Any:
        """A confluent-kafka consumer."""
        return Consumer(conf)

    def producer(self, conf: dict[str, Any]) -> Any:
        """A confluent-kafka producer."""
        return Producer(conf)

    def redis(self, settings: Settings) -> Any:
        """A Redis client."""
        return redis_client(settings.redis)


def consumer_conf(settings: Settings, on_commit: CommitCallback | None = None
                  ) -> dict[str, Any]:
    """Manual offset storage and commits, the group's assignment strategy (cooperative
    by default: see ``serve.rebalance``); ``kafka.extra`` may override the rest.

    ``on_commit`` sees every commit's outcome (default: failures are logged).
    """
    k = settings.kafka
    conf: dict[str, Any] = {
        "group.id": k.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": k.partition_assignment_strategy,
        "session.timeout.ms": k.session_timeout_ms,
        "max.poll.interval.ms": k.max_poll_interval_ms,
        "fetch.min.bytes": settings.batch.fetch_min_bytes,
        "fetch.wait.max.ms": settings.batch.fetch_max_wait_ms,
        "on_commit": on_commit or log_commit_errors,
    }
    return conf | k.client_config()


def log_commit_errors(err: Any, partitions: list[TopicPartition]) -> None:
    """``on_commit``: an asynchronous (interval) commit that failed is only logged; the
    next checkpoint commits the same or later offsets, so nothing is skipped."""
    failed = [tp.partition for tp in partitions if tp.error is not None]
    if err is not None and err.code() == KafkaError._NO_OFFSET:
        return
    if err is not None or failed:
        log.warning("offset commit failed", extra={"error": str(err), "partitions": failed})


def producer_conf(settings: Settings) -> dict[str, Any]:
    """Warm commands and dead letters: a short linger keeps latency low.

    ``message.max.bytes`` is librdkafka's default, set here so that the bound is
    explicit: below the broker's default (1,048,588) and above the largest dead
    letter (``events.dead_letter_max_bytes`` plus the record's framing); a
    ``kafka.extra`` value that would refuse a dead letter is a ``ConfigError``.
    """
    conf = {"linger.ms": 2, "message.max.bytes": 1_000_000} | settings.kafka.client_config()
    need = settings.events.dead_letter_max_bytes + RECORD_OVERHEAD_BYTES
    limit = str(conf["message.max.bytes"]).strip()
    if not is_ascii_digits(limit) or int(limit) < need:
        msg = (f"kafka.extra message.max.bytes={conf['message.max.bytes']} is below "
               f"events.dead_letter_max_bytes + {RECORD_OVERHEAD_BYTES} = {need}: the "
               "producer would refuse the dead letters of large bad events")
        raise ConfigError(msg)
    return conf


def build_engine(
    settings: Settings,
    strategy: WarmingStrategy,
    sinks: tuple[RedisSink, KafkaSink],
    metrics: ServeMetrics,
    *,
    clock: Callable[[], float],
    wall_ms: Callable[[], int],
    latency_observer: LatencyObserver | None,
) -> WarmEngine:
    """Windows, batcher, policy and precision sized from ``settings``."""
    s = settings
    precision = PrecisionTracker(s.policy.precision_horizon_s, max_outstanding=MAX_OUTSTANDING,
                                 max_tenants=s.window.max_tenants)
    policy = WarmPolicy(s.policy, precision, clock=clock, wall_ms=wall_ms,
                        topic=s.topics.access_events, max_tenants=s.window.max_tenants,
                        max_dedup=MAX_DEDUP)
    parts = (TenantWindows(s.window), MicroBatcher(s.batch, clock), policy, precision)
    engine = WarmEngine(strategy, s.strategy.k, parts, sinks, metrics, clock=clock,
                        wall_ms=wall_ms, latency_observer=latency_observer)
    metrics.engine_counts.engine = engine  # its counts, read at each scrape
    return engine


def bounds(settings: Settings) -> dict[str, int]:
    """The bound of every in-process map of ``build_engine`` (``bounded_capacity``; the
    sizes are in ``stats.bounded_sizes``). The batcher's is where it flushes."""
    tenants = settings.window.max_tenants
    return {"windows": tenants, "batcher": settings.batch.max_batch,
            "policy_dedup": MAX_DEDUP, "policy_budgets": tenants,
            "policy_pending": settings.policy.max_pending,
            "precision_outstanding": MAX_OUTSTANDING, "precision_tenants": tenants}


def install_signals(stack: ExitStack, stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT call ``stop`` (main thread only); the old handlers come back on exit."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(_signum: int, _frame: object) -> None:
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.signal(sig, handler)
        stack.callback(signal.signal, sig, previous)
