"""The serve loop's reading side: poll a batch of records from the consumer, decode each
one, hand good events to the engine and bad ones to the dead letters, and note every
offset consumed (while Redis is down, only the offsets: see ``serve.outage``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError as _KafkaErr
from confluent_kafka import KafkaException

from stream_warmer.errors import KafkaError
from stream_warmer.events import AccessEvent, EventDecoder
from stream_warmer.serve.deadletters import DeadLetters
from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.outage import Outage
from stream_warmer.serve.stats import Offsets, RunStats
from stream_warmer.settings import BatchSettings

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.1
# a confluent_kafka.Message; its stubs type partition/offset/error as Optional even on
# data messages, so the hot loop treats it as Any after checking error().
Msg = Any


class Intake:
    """``poll`` a batch from the consumer, then ``handle`` it (one app, its loop thread)."""

    def __init__(self, consumer: Any, engine: WarmEngine, decoder: EventDecoder,
                 dead_letters: DeadLetters, outage: Outage, *, batch: BatchSettings,
                 offsets: Offsets, stats: RunStats, metrics: ServeMetrics,
                 clock: Callable[[], float], wall_ms: Callable[[], int]) -> None:
        self._consumer, self._engine, self._decoder = consumer, engine, decoder
        self._dead_letters, self._outage, self._batch = dead_letters, outage, batch
        self._offsets, self._stats, self._metrics = offsets, stats, metrics
        self._clock, self._wall_ms = clock, wall_ms
        self._polled_at = 0.0

    def poll(self, max_messages: int | None) -> list[Msg]:
        """The records queued now, or else the first to arrive within the wait an open
        micro-batch allows (and what came with it); at most ``max_messages`` in all."""
        limit = self._batch.poll_batch
        if max_messages is not None:
            limit = max(1, min(limit, max_messages - self._stats.consumed))
        # never block longer than an open micro-batch may still wait
        max_wait = self._batch.max_delay_ms / 1000.0
        batcher = self._engine.batcher
        timeout = _IDLE_POLL_S if self._outage.active else batcher.time_to_due(max_wait)
        self._polled_at = self._clock()
        try:
            # consume() blocks until it has ``limit`` messages or the timeout passed, so
            # take what is queued now; if nothing is, wait for the first message only
            messages = list(self._consumer.consume(limit, 0))
            if messages or timeout <= 0:
                return messages
            first = self._consumer.poll(timeout)
            if first is None:
                return []
            return [first, *self._consumer.consume(limit - 1, 0)] if limit > 1 else [first]
        except KafkaException as exc:
            msg = f"consume failed: {exc}"
            raise KafkaError(msg) from exc

    def handle(self, messages: list[Msg]) -> None:
        """Decode each record: a good event goes to the engine, a bad one is dead-lettered."""
        if not messages:
            return
        if self._outage.active:
            self._hold_back(messages)
            return
        now = self._clock()
        batcher = self._engine.batcher
        was_empty = not len(batcher)
        decode, handle, offsets = self._decoder.decode, self._engine.handler(now), self._offsets
        now_ms = self._wall_ms()
        good = bad = 0
        for msg in messages:
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            partition, offset = msg.partition(), msg.offset()
            offsets.consumed(partition, offset)
            event = decode(msg.value(), now_ms)
            if isinstance(event, AccessEvent):
                handle(partition, offset, event)
                good += 1
            else:
                self._dead_letters.send(msg, event)
                bad += 1
        if was_empty:  # these events may have arrived any time during the poll
            batcher.backdate(self._polled_at)
        self._stats.consumed += len(messages)
        self._stats.events += good
        self._stats.bad += bad
        self._metrics.events.inc(good)
        self._engine.delay.events(good)
        self._stats.mark(now)

    def _hold_back(self, messages: list[Msg]) -> None:
        """While Redis is down, consumed events are not handled: note where to rewind to."""
        for msg in messages:
            if msg.error() is None:
                self._offsets.consumed(msg.partition(), msg.offset())

    def _consumer_error(self, msg: Msg) -> None:
        err = msg.error()
        if err.code() == _KafkaErr._PARTITION_EOF:
            return
        if err.fatal():
            text = f"fatal consumer error: {err.str()}"
            raise KafkaError(text)
        log.warning("consumer error", extra={"error": err.str()})
