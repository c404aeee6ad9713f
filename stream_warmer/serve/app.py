"""The serve loop: a consumer group member that turns access events into warm commands.

Delivery is at-least-once. Offsets are *stored* only once every event up to them is
handled (warm commands written to Redis, dead letters queued), and *committed* by a
checkpoint (``serve.checkpoint``), always in this order:

1. snapshot the stored offsets;
2. flush the Redis sink (one pipelined round trip);
3. flush the producer (warm commands and dead letters delivered);
4. commit the snapshot as explicit offsets (nothing, if the producer is behind).

A checkpoint runs every ``checkpoint_interval_s``, in the revoke callback (no
inference there: what was not predicted yet is re-handled by the next owner; see
``serve.rebalance``) and on shutdown (after a final micro-batch). When Redis is
unreachable the app stops committing, pauses its partitions, retries with
exponential backoff, and when Redis answers again rewinds to the first event it had
not stored and resumes.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

from confluent_kafka import KafkaException, TopicPartition

from stream_warmer.errors import SinkUnavailableError
from stream_warmer.events import EventDecoder
from stream_warmer.serve.checkpoint import Checkpointer, CommitReport
from stream_warmer.serve.deadletters import DeadLetters
from stream_warmer.serve.delay import DelayReporter
from stream_warmer.serve.engine import LatencyObserver
from stream_warmer.serve.intake import Intake
from stream_warmer.serve.metrics import MetricsServer, ServeMetrics
from stream_warmer.serve.outage import Outage
from stream_warmer.serve.outbox import Outbox
from stream_warmer.serve.rebalance import Rebalancer
from stream_warmer.serve.sinks import KafkaSink, RedisSink
from stream_warmer.serve.stats import Offsets, RunStats
from stream_warmer.serve.wiring import (
    Clients,
    bounds,
    build_engine,
    consumer_conf,
    install_signals,
    producer_conf,
)
from stream_warmer.settings import Settings
from stream_warmer.strategies.base import BASELINE_VERSION, WarmingStrategy

log = logging.getLogger(__name__)

StrategySource = Callable[[], WarmingStrategy | None]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ServeApp:
    """One ``serve`` replica. Build it, then ``run()``; ``stop()`` is thread- and signal-safe.

    ``strategy_source`` is polled between micro-batches; when it returns a strategy,
    that strategy replaces the current one (hot swap). It must be cheap and must not
    block (e.g. check a flag set by a watcher thread).
    """

    def __init__(
        self,
        settings: Settings,
        strategy: WarmingStrategy,
        *,
        strategy_source: StrategySource | None = None,
        clients: Clients | None = None,
        metrics: ServeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
        latency_observer: LatencyObserver | None = None,
        serve_http: bool | None = None,
    ) -> None:
        self._s = settings
        self._topic = settings.topics.access_events
        self._source = strategy_source
        self._clients = clients or Clients()
        self.metrics = metrics or ServeMetrics()
        self._clock = clock
        self._wall_ms = wall_ms
        self._serve_http = settings.metrics.enabled if serve_http is None else serve_http
        self._decoder = EventDecoder(settings.events.max_key_bytes,
                                     settings.events.future_ts_tolerance_ms)
        self._stop = threading.Event()
        self.stats = RunStats()
        self.offsets = Offsets()
        self._latency_observer = latency_observer
        self._strategy = strategy
        self._outage = Outage(self._topic, self.offsets, self.metrics, self.stats, clock=clock,
                              backoff_max_s=settings.redis.retry_backoff_max_s)
        self.metrics_port: int | None = None
        self.metrics.set_model(strategy.name, strategy.model_version)

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Ask the loop to finish: final micro-batch, final checkpoint, close."""
        self._stop.set()

    def healthy(self) -> bool:
        """For ``/healthz``: the loop runs and Redis answers."""
        return not self._stop.is_set() and not self._outage.active

    def run(self, max_messages: int | None = None, idle_timeout_s: float | None = None) -> RunStats:
        """Serve until stopped, or ``max_messages`` consumed, or ``idle_timeout_s`` of silence."""
        with ExitStack() as stack:
            self._open(stack)
            self._loop(max_messages, idle_timeout_s)
            self._shutdown()
        return self.stats

    def _open(self, stack: ExitStack) -> None:
        s = self._s
        self._redis_client = self._clients.redis(s)
        stack.callback(self._redis_client.close)
        rejected = self.metrics.produce_rejected
        self._outbox = Outbox(self._clients.producer(producer_conf(s)),
                              lambda topic, outcome: rejected.labels(topic, outcome).inc(),
                              stopping=self._stop.is_set)
        stack.callback(self._outbox.flush, 10.0)
        self._dead_letters = DeadLetters(self._outbox, s.topics.dead_letter, self._topic,
                                         s.events.dead_letter_max_bytes, self.metrics)
        sinks = (RedisSink(self._redis_client, s.redis, int(s.policy.dedup_ttl_s * 1000)),
                 KafkaSink(self._outbox.produce, s.topics.warm_commands))
        self._engine = build_engine(s, self._strategy, sinks, self.metrics, clock=self._clock,
                                    wall_ms=self._wall_ms, latency_observer=self._latency_observer)
        # the measured event -> warm delay, for the trainer's gate (serve/delay.py)
        self._delay = DelayReporter(
            self._engine.delay, self._redis_client, s.redis.key_prefix,
            replica=f"{s.kafka.client_id}-{socket.gethostname()}-{os.getpid()}",
            gauge=self.metrics.warm_delay, clock=self._clock)
        for name, bound in bounds(s).items():
            self.metrics.bounded_capacity.labels(name).set(bound)
        self._consumer = self._clients.consumer(
            consumer_conf(s, CommitReport(self.offsets, self._topic)))
        stack.callback(self._consumer.close)
        self._intake = Intake(self._consumer, self._engine, self._decoder, self._dead_letters,
                              self._outage, batch=s.batch, offsets=self.offsets, stats=self.stats,
                              metrics=self.metrics, clock=self._clock, wall_ms=self._wall_ms)
        if self._serve_http:
            server = stack.enter_context(MetricsServer(self.metrics.registry, self.healthy,
                                                       s.metrics.host, s.metrics.port))
            self.metrics_port = server.port
        install_signals(stack, self.stop)
        if s.batch.gc_freeze:
            stack.callback(gc.unfreeze)  # frozen objects become collectable again
        self._checkpoints = Checkpointer(
            self._engine, self._outbox, self._consumer, self._outage, metrics=self.metrics,
            stats=self.stats, offsets=self.offsets, topic=self._topic,
            interval_s=s.batch.checkpoint_interval_s, gc_freeze=s.batch.gc_freeze,
            clock=self._clock)
        self.rebalancer = Rebalancer(
            self._engine, self._checkpoints, self._outage, topic=self._topic,
            offsets=self.offsets, metrics=self.metrics,
            cooperative=s.kafka.partition_assignment_strategy == "cooperative-sticky")
        self._consumer.subscribe([self._topic], on_assign=self.rebalancer.on_assign,
                                 on_revoke=self.rebalancer.on_revoke,
                                 on_lost=self.rebalancer.on_lost)
        log.info("serving", extra={"topic": self._topic, "group": s.kafka.consumer_group,
                                   "strategy": self._strategy.name})

    # ------------------------------------------------------------------ the loop
    def _loop(self, max_messages: int | None, idle_timeout_s: float | None) -> None:
        idle_since = self._clock()
        while not self._stop.is_set():
            messages = self._intake.poll(max_messages)
            self._intake.handle(messages)
            self._flush_store_and_deliver()
            self._maybe_swap_strategy()
            self._checkpoints.maybe()
            self._delay.maybe()
            self._outage.maybe_recover(self._engine, self._consumer)
            if messages:
                idle_since = self._clock()
            elif idle_timeout_s is not None and self._clock() - idle_since >= idle_timeout_s:
                return
            if max_messages is not None and self.stats.consumed >= max_messages:
                return

    def _flush_store_and_deliver(self, force: bool = False) -> None:
        """Flush the micro-batch when due (or ``force``); once nothing is pending,
        store the offsets of everything handled; serve the producer's callbacks."""
        if self._outage.active:
            return
        engine = self._engine
        if force or engine.batcher.due():
            try:
                self.stats.commands += engine.flush()
            except SinkUnavailableError as exc:
                self._outage.enter(exc, self._engine, self._consumer)
                return
        if not len(engine.batcher):
            self._store_offsets()
        self._outbox.poll()

    def _store_offsets(self) -> None:
        """Everything consumed so far is handled: store the next offset of each partition."""
        pending = self.offsets.take_unstored()
        if not pending:
            return
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(self._topic, p, o) for p, o in pending.items()])
        except KafkaException as exc:  # a partition revoked meanwhile: its next owner re-reads
            log.warning("offsets not stored", extra={"error": str(exc)})
            return
        self.offsets.stored(pending)

    def _maybe_swap_strategy(self) -> None:
        if self._source is None:
            return
        new = self._source()
        if new is None:
            return
        adopt = getattr(new, "adopt_state", None)
        if callable(adopt) and self._strategy.model_version == BASELINE_VERSION:
            # first model after the cold-start fallback: seed it from the baseline's
            # tables (model-to-model handovers are the watcher's, on the same thread)
            adopt(self._strategy)
        self._engine.strategy = self._strategy = new
        self.metrics.swaps.inc()
        self.metrics.set_model(new.name, new.model_version)
        log.info("strategy swapped", extra={"strategy": new.name, "version": new.model_version})

    def _shutdown(self) -> None:
        if not self._outage.active:
            self._flush_store_and_deliver(force=True)
        if not self._outage.active:
            self._checkpoints.run("shutdown")
        self._checkpoints.publish()
        self.stats.finished_at = self._clock()
        log.info("stopped", extra=self.stats.summary())
