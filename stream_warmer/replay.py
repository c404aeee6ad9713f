"""Produce a trace into the access topic, paced, bounded and interruptible.

Each event goes out keyed by tenant (so one tenant stays in one partition, in
order) with the JSON of ``events.encode``. Its ``ts`` is **rewritten to the wall
clock (epoch ms) at the moment it is produced**: trace timestamps are ordinals or
ms since the trace start, and the serve pipeline measures event-to-warm latency
from ``ts``. The trace's own timestamps only pace ``speedup`` mode.

Pacing: ``rate`` events/s, or ``speedup`` x the trace's own time (``ts`` in ms),
or neither (as fast as the producer takes them). ``stop()`` is checked between
events (the CLI sets it on SIGINT); then the producer is flushed and the count of
events produced so far is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stream_warmer.errors import KafkaError
from stream_warmer.events import AccessEvent, encode

# High-throughput defaults; the caller's configuration wins.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1_048_576,
    "batch.num.messages": 100_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "acks": "all",
    "enable.idempotence": True,
    "delivery.report.only.error": True,  # no Python callback per delivered message
}
PROGRESS_EVERY = 10_000
FLUSH_TIMEOUT_S = 60.0
_MAX_NAP_S = 0.1


class Pacer:
    """Sleeps until event ``i`` (with trace time ``ts`` ms) is due; clock injected."""

    def __init__(
        self,
        rate: float | None = None,
        speedup: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and speedup is not None:
            msg = "give rate or speedup, not both"
            raise ValueError(msg)
        if (rate is not None and rate <= 0) or (speedup is not None and speedup <= 0):
            msg = f"rate ({rate}) and speedup ({speedup}) must be > 0"
            raise ValueError(msg)
        self._rate, self._speedup = rate, speedup
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._ts0 = 0

    @property
    def paced(self) -> bool:
        """False when events go out as fast as the producer takes them."""
        return self._rate is not None or self._speedup is not None

    def due(self, i: int, ts: int) -> float:
        """Seconds after the start at which event ``i`` is due."""
        if self._rate is not None:
            return i / self._rate
        if self._speedup is not None:
            return (ts - self._ts0) / 1000.0 / self._speedup
        return 0.0

    def wait(self, i: int, ts: int, stop: Callable[[], bool]) -> None:
        """Block until event ``i`` is due (in naps of <= 0.1 s, so ``stop`` is seen)."""
        if self._start is None:
            self._start, self._ts0 = self._clock(), ts
        target = self._start + self.due(i, ts)
        while not stop():
            ahead = target - self._clock()
            if ahead <= 0.001:
                return
            self._sleep(min(ahead, _MAX_NAP_S))


class _Delivery:
    """Delivery reports: the first error is kept and raised by ``check``."""

    def __init__(self) -> None:
        self.error: str | None = None

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = str(err)

    def check(self, topic: str) -> None:
        if self.error is not None:
            msg = f"producing to {topic!r} failed: {self.error}"
            raise KafkaError(msg)


def replay(  # noqa: PLR0917 - the positional signature the demo and bench call
    events: Iterable[AccessEvent],
    producer_conf: Mapping[str, Any],
    topic: str,
    rate: float | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    *,
    speedup: float | None = None,
    stop: Callable[[], bool] | None = None,
    pacer: Pacer | None = None,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> int:
    """Produce ``events`` (at most ``limit``) to ``topic``; return how many were produced.

    Raises ``KafkaError`` when the producer cannot be created, a delivery fails, or
    messages are still undelivered after the final flush.
    """
    from confluent_kafka import KafkaException, Producer

    pacer = pacer or Pacer(rate, speedup)
    should_stop = stop or (lambda: False)
    delivery = _Delivery()
    try:
        producer = Producer({**PRODUCER_DEFAULTS, **producer_conf, "on_delivery": delivery})
    except KafkaException as exc:
        msg = f"cannot create a producer for {topic!r}: {exc}"
        raise KafkaError(msg) from exc
    count = 0
    try:
        for event in events:
            if (limit is not None and count >= limit) or should_stop():
                break
            if pacer.paced:
                pacer.wait(count, event.ts, should_stop)
            out = AccessEvent(event.tenant, event.key, now_ms(), event.op, event.size)
            _produce(producer, topic, out, delivery)
            count += 1
            if count % PROGRESS_EVERY == 0:
                producer.poll(0)
                delivery.check(topic)
                if on_progress is not None:
                    on_progress(count)
    finally:
        _flush(producer, topic, delivery)
    if on_progress is not None:
        on_progress(count)
    return count


def _produce(producer: Any, topic: str, event: AccessEvent, delivery: _Delivery) -> None:
    from confluent_kafka import KafkaException

    key, value = event.tenant.encode(), encode(event)
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain it
            delivery.check(topic)
        except KafkaException as exc:
            msg = f"cannot produce to {topic!r}: {exc}"
            raise KafkaError(msg) from exc


def _flush(producer: Any, topic: str, delivery: _Delivery) -> None:
    left = producer.flush(FLUSH_TIMEOUT_S)
    delivery.check(topic)
    if left:
        msg = f"{left} events to {topic!r} still undelivered after {FLUSH_TIMEOUT_S:.0f} s"
        raise KafkaError(msg)
