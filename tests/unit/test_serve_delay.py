"""The delay serve measures (serve/delay.py): the meter, the reports and the L the
trainer's gate applies."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from stream_warmer.serve.delay import (
    MAX_SAMPLES,
    DelayMeter,
    DelayReport,
    delay_key,
    delay_requests,
    gate_delay,
    publish,
)


def test_meter_reports_the_median_latency_and_the_event_rate() -> None:
    now = [0.0]
    meter = DelayMeter(lambda: now[0], lambda: 5)
    assert meter.report() is None  # nothing warmed yet
    meter.events(3000)
    for latency in (0.001, 0.002, 0.010):
        meter.warm(latency)
    now[0] = 1.5
    report = meter.report()
    assert report == DelayReport(0.002, 2000.0, 5)
    assert report.requests == 4  # 2 ms at 2,000 events/s
    meter.events(100)
    now[0] = 2.5
    quiet = meter.report()  # no warms this interval: the last latency, the new rate
    assert quiet is not None and quiet.latency_s == 0.002 and quiet.rate_per_s == 100.0


def test_meter_keeps_a_bounded_sample() -> None:
    meter = DelayMeter(lambda: 1.0, lambda: 0)
    for i in range(3 * MAX_SAMPLES):
        meter.warm(float(i))
    assert len(meter._latencies) <= MAX_SAMPLES


def test_the_whole_stream_delay_sums_the_replicas_rates() -> None:
    now = 100_000
    reports = [DelayReport(0.004, 1000.0, now - 1000), DelayReport(0.002, 1000.0, now - 500),
               DelayReport(9.0, 1000.0, now - 200_000)]  # stale: ignored
    assert delay_requests(reports, now, max_age_s=60) == 8  # slowest 4 ms x 2,000/s
    assert delay_requests(reports[2:], now, max_age_s=60) == 0
    assert delay_requests([], now, max_age_s=60) == 0


class _Redis:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.expiry: dict[str, int] = {}

    def pipeline(self, transaction: bool = True) -> _Redis:
        return self

    def hset(self, key: str, field: str, value: str) -> None:
        self.data.setdefault(key, {})[field] = value.encode()

    def expire(self, key: str, seconds: int) -> None:
        self.expiry[key] = seconds

    def execute(self) -> None:
        pass

    def hgetall(self, key: str) -> dict[str, Any]:
        return self.data.get(key, {})


def test_published_reports_reach_the_gate_and_bad_ones_are_skipped(
        caplog: pytest.LogCaptureFixture) -> None:
    redis = _Redis()
    publish(redis, "sw", "serve-a", DelayReport(0.003, 1500.0, 1000), ttl_s=120)
    publish(redis, "sw", "serve-b", DelayReport(0.001, 500.0, 1000), ttl_s=120)
    redis.data[delay_key("sw")]["broken"] = b"{not json"
    assert redis.expiry[delay_key("sw")] == 120
    with caplog.at_level(logging.WARNING):
        assert gate_delay(redis, "sw", now_ms=2000, max_age_s=60) == 6  # 3 ms x 2,000/s
    assert "bad warm-delay report skipped" in caplog.text


def test_redis_down_gates_at_delay_zero(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def hgetall(self, key: str) -> None:
            raise ConnectionError("refused")

    with caplog.at_level(logging.WARNING):
        assert gate_delay(Down(), "sw", now_ms=0, max_age_s=60) == 0
    assert "gating at delay 0" in caplog.text


def test_reporter_publishes_when_due_and_survives_redis_down(
        caplog: pytest.LogCaptureFixture) -> None:
    from stream_warmer.serve.delay import DelayReporter

    now = [0.0]
    meter = DelayMeter(lambda: now[0], lambda: int(now[0] * 1000))
    redis = _Redis()

    class Gauge:
        value = -1.0

        def set(self, v: float) -> None:
            self.value = v

    gauge = Gauge()
    reporter = DelayReporter(meter, redis, "sw", replica="r1", gauge=gauge,
                             clock=lambda: now[0], every_s=10)
    meter.events(20_000)
    meter.warm(0.005)
    now[0] = 5.0
    assert reporter.maybe() is None  # not due
    now[0] = 10.0
    report = reporter.maybe()
    assert report is not None and report.requests == 10  # 5 ms x 2,000/s
    assert gauge.value == 10
    assert gate_delay(redis, "sw", now_ms=10_000, max_age_s=60) == 10

    class Down(_Redis):
        def execute(self) -> None:
            raise ConnectionError("refused")

    reporter._redis = Down()
    meter.warm(0.001)
    now[0] = 20.0
    with caplog.at_level(logging.WARNING):
        assert reporter.maybe() is not None
        now[0] = 30.0
        meter.warm(0.001)
        reporter.maybe()
    assert caplog.text.count("warm delay not reported") == 1
