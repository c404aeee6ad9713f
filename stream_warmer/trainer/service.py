"""``stream-warmer train``: learn from the stream, retrain on a schedule, publish.

The trainer is its own consumer group on the access topic. Its loop reads like a
table of contents: poll a batch, decode it into the bounded buffer, start a round
when one is due, collect the round that finished. A round runs on one worker
thread (torch releases the GIL), so the consumer keeps polling and stays in its
group however long training takes; at most one round runs at a time. Offsets are
auto-committed: the trainer has no side effect per event, and a restarted trainer
rebuilds its buffer from where its group left off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from stream_warmer.errors import KafkaError
from stream_warmer.events import AccessEvent, EventDecoder
from stream_warmer.settings import KafkaSettings, TrainerSettings
from stream_warmer.trainer import metrics as m
from stream_warmer.trainer.buffer import EventBuffer
from stream_warmer.trainer.rounds import RoundResult

log = logging.getLogger(__name__)

RoundFn = Callable[[Any], RoundResult]


class Schedule:
    """Due every ``every_events`` new events or ``every_s`` seconds, whichever first."""

    def __init__(self, every_events: int, every_s: float, clock: Callable[[], float]) -> None:
        self._every_events = every_events
        self._every_s = every_s
        self._clock = clock
        self._last = clock()
        self._new = 0

    def add(self, n: int) -> None:
        """Count ``n`` newly buffered events."""
        self._new += n

    def due(self) -> bool:
        """Whether a round should start now (and there is anything new to learn)."""
        if self._new == 0:
            return False
        return self._new >= self._every_events or self._clock() - self._last >= self._every_s

    def started(self) -> None:
        """A round started now: restart both counters."""
        self._last = self._clock()
        self._new = 0


class TrainerService:
    """Consume access events into the buffer and run training rounds on schedule."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        settings: TrainerSettings,
        round_fn: RoundFn,
        *,
        max_key_bytes: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._settings = settings
        self._round = round_fn
        self._decoder = EventDecoder(max_key_bytes)
        self._clock = clock
        self.buffer = EventBuffer(settings.buffer_events)
        self.schedule = Schedule(settings.retrain_every_events, settings.retrain_every_s, clock)
        self.results: list[RoundResult] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer-round")
        self._running: Future[RoundResult] | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to finish (the round in flight is waited for); signal-safe."""
        self._stop.set()

    def consumer_config(self) -> dict[str, Any]:
        """The trainer group's consumer options."""
        return {
            **self._kafka.client_config(),
            "group.id": self._settings.consumer_group,
            "enable.auto.commit": True,
            "auto.offset.reset": self._settings.auto_offset_reset,
            "max.poll.interval.ms": self._kafka.max_poll_interval_ms,
            "session.timeout.ms": self._kafka.session_timeout_ms,
        }

    def run(self, max_rounds: int | None = None, idle_timeout_s: float | None = None) -> int:
        """Loop until ``max_rounds`` rounds finished or nothing arrived for
        ``idle_timeout_s`` (both unbounded by default); return the rounds finished."""
        from confluent_kafka import Consumer

        consumer = Consumer(self.consumer_config())
        consumer.subscribe([self._topic])
        last_data = self._clock()
        try:
            while not self._stop.is_set() and (
                max_rounds is None or len(self.results) < max_rounds
            ):
                got = self._poll(consumer)
                last_data = self._clock() if got else last_data
                self._maybe_start_round()
                self._collect_round(wait=False)
                idle = self._clock() - last_data
                if idle_timeout_s is not None and idle >= idle_timeout_s and self._running is None:
                    break
        finally:
            self._collect_round(wait=True)
            consumer.close()
            self._pool.shutdown(wait=True)
        return len(self.results)

    def _poll(self, consumer: Any) -> int:
        records = consumer.consume(self._settings.poll_batch, timeout=0.5)
        events: list[AccessEvent] = []
        for record in records:
            if record.error() is not None:
                msg = f"trainer consumer error: {record.error()}"
                raise KafkaError(msg)
            decoded = self._decoder.decode(record.value())
            if isinstance(decoded, AccessEvent):
                events.append(decoded)
            else:
                m.TRAINER_EVENTS.labels("bad").inc()
        self.add_events(events)
        return len(records)

    def add_events(self, events: list[AccessEvent]) -> None:
        """Buffer decoded events and count them toward the schedule."""
        self.buffer.extend(events)
        self.schedule.add(len(events))
        m.TRAINER_EVENTS.labels("ok").inc(len(events))
        m.TRAINER_BUFFER.set(len(self.buffer))

    def _maybe_start_round(self) -> None:
        if self._running is not None or not self.schedule.due():
            return
        if len(self.buffer) < self._settings.min_events:
            return
        self.schedule.started()
        frame = self.buffer.frame()
        log.info("training round started", extra={"buffer_events": len(frame)})
        m.TRAINER_ROUND_RUNNING.set(1)
        self._running = self._pool.submit(self._round, frame)

    def _collect_round(self, wait: bool) -> None:
        running = self._running
        if running is None or (not wait and not running.done()):
            return
        self._running = None
        m.TRAINER_ROUND_RUNNING.set(0)
        result = running.result()
        self.results.append(result)
        version = result.update.version if result.update else None
        log.info(
            "training round finished",
            extra={
                "outcome": result.outcome,
                "events": result.events,
                "seconds": round(result.seconds, 3),
                "version": version,
                "detail": result.detail,
            },
        )
