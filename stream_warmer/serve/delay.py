"""The delay serve runs at, measured, and handed to the trainer's gate.

A warm is worth something only if it lands before the request it anticipates
(DESIGN §8); the delay-aware evaluation (``evaluate --delay L``) applies each warm L
requests of the whole stream late. So that the trainer judges candidates at the
delay they will serve at, not at 0, every serve replica measures its own:

* ``DelayMeter`` keeps, per report interval, the event -> warm latencies of the warm
  commands it wrote (from the event's timestamp to the write, as the
  ``event_to_warm_seconds`` histogram) and the events it consumed;
* every ``report_every_s`` the replica publishes (median latency, events per second)
  to a Redis hash, one field per replica, and sets the gauge
  ``stream_warmer_warm_delay_requests`` to its own delay in requests;
* the trainer reads the hash before each gate (``gate_delay``): the replicas together
  consume the whole stream, so L = ceil(latency x the summed rate), with the slowest
  fresh replica's latency (reports older than ``max_age_s`` are ignored; none: 0).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_SAMPLES = 4096  # latencies kept per interval (the newest)


def delay_key(prefix: str) -> str:
    """The Redis hash of the replicas' reports."""
    return f"{prefix}::serve:warm-delay"


@dataclass(frozen=True, slots=True)
class DelayReport:
    """One replica's measurement over one interval."""

    latency_s: float  # median event -> warm latency
    rate_per_s: float  # events consumed per second
    wall_ms: int  # when it was measured

    @property
    def requests(self) -> int:
        """This replica's own delay in requests of what it consumes."""
        return max(0, math.ceil(self.latency_s * self.rate_per_s - 1e-9))

    def to_json(self) -> str:
        return json.dumps({"latency_s": self.latency_s, "rate_per_s": self.rate_per_s,
                           "wall_ms": self.wall_ms})

    @classmethod
    def from_json(cls, text: str | bytes) -> DelayReport:
        data = json.loads(text)
        return cls(float(data["latency_s"]), float(data["rate_per_s"]), int(data["wall_ms"]))


class DelayMeter:
    """Event -> warm latencies and consumed events since the last report."""

    def __init__(self, clock: Callable[[], float], wall_ms: Callable[[], int]) -> None:
        self._clock, self._wall_ms = clock, wall_ms
        self._since = clock()
        self._events = 0
        self._latencies: list[float] = []
        self._last: DelayReport | None = None

    def events(self, n: int) -> None:
        """``n`` more events consumed."""
        self._events += n

    def warm(self, latency_s: float) -> None:
        """One warm command written, ``latency_s`` after its cause's timestamp."""
        if len(self._latencies) >= MAX_SAMPLES:
            del self._latencies[: MAX_SAMPLES // 2]
        self._latencies.append(latency_s)

    def report(self) -> DelayReport | None:
        """The interval's report, and start the next; None before any warm (an interval
        without warms keeps the last latency, with the interval's rate)."""
        now = self._clock()
        elapsed = now - self._since
        rate = self._events / elapsed if elapsed > 0 else 0.0
        latency = (statistics.median(self._latencies) if self._latencies
                   else self._last.latency_s if self._last is not None else None)
        self._since, self._events, self._latencies = now, 0, []
        if latency is None:
            return None
        self._last = DelayReport(max(0.0, latency), rate, self._wall_ms())
        return self._last


class DelayReporter:
    """Every ``every_s``: the meter's report to Redis (``publish``) and to the gauge.

    Redis being down costs one failed write per interval (logged once per outage);
    the serve loop never waits on it for longer than the client's socket timeout.
    """

    def __init__(self, meter: DelayMeter, redis: Any, prefix: str, *, replica: str,
                 gauge: Any, clock: Callable[[], float], every_s: float = 10.0,
                 ttl_s: float = 120.0) -> None:
        self.meter, self._redis, self._prefix, self._replica = meter, redis, prefix, replica
        self._gauge, self._clock, self._every, self._ttl = gauge, clock, every_s, ttl_s
        self._next = clock() + every_s
        self._failing = False

    def maybe(self) -> DelayReport | None:
        """Report when due; the report, or None (not due, or nothing warmed yet)."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._every
        report = self.meter.report()
        if report is None:
            return None
        self._gauge.set(report.requests)
        try:
            publish(self._redis, self._prefix, self._replica, report, self._ttl)
        except Exception as exc:  # the trainer then reads older reports, or none
            if not self._failing:
                log.warning("warm delay not reported", extra={"error": str(exc)})
            self._failing = True
        else:
            self._failing = False
        return report


def publish(redis: Any, prefix: str, replica: str, report: DelayReport, ttl_s: float) -> None:
    """Store ``report`` under ``replica``; the hash expires ``ttl_s`` after the newest
    report (a group that stopped leaves nothing behind)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hset(delay_key(prefix), replica, report.to_json())
    pipe.expire(delay_key(prefix), max(1, math.ceil(ttl_s)))
    pipe.execute()


def delay_requests(reports: Iterable[DelayReport], now_ms: int, max_age_s: float) -> int:
    """L for the whole stream from the replicas' fresh reports (module docstring)."""
    fresh = [r for r in reports if now_ms - r.wall_ms <= max_age_s * 1000]
    if not fresh:
        return 0
    latency = max(r.latency_s for r in fresh)
    return max(0, math.ceil(latency * sum(r.rate_per_s for r in fresh) - 1e-9))


def gate_delay(redis: Any, prefix: str, now_ms: int, max_age_s: float) -> int:
    """The delay the trainer's gate applies: ``delay_requests`` of the stored reports
    (unreadable ones are skipped with a warning; Redis down: 0, logged)."""
    try:
        raw: Mapping[Any, Any] = redis.hgetall(delay_key(prefix))
    except Exception as exc:  # the gate still runs, at delay 0
        log.warning("serve's warm delay unreadable; gating at delay 0",
                    extra={"error": str(exc)})
        return 0
    reports = []
    for replica, text in raw.items():
        try:
            reports.append(DelayReport.from_json(text))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad warm-delay report skipped",
                        extra={"replica": str(replica), "error": str(exc)})
    return delay_requests(reports, now_ms, max_age_s)
