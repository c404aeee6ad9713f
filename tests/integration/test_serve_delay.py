"""The delay serve reports reaches the trainer's gate through a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from stream_warmer.serve.delay import DelayMeter, DelayReporter, delay_key, gate_delay

pytestmark = pytest.mark.integration


def test_two_replicas_reports_give_the_whole_streams_delay(
        redis_url: str, unique: Callable[[str], str]) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = unique("sw")
    now = [0.0]

    class Gauge:
        def set(self, value: float) -> None:
            self.value = value

    try:
        for replica, (events, latency) in {"a": (10_000, 0.004), "b": (30_000, 0.002)}.items():
            meter = DelayMeter(lambda: now[0], lambda: 1_000_000)
            reporter = DelayReporter(meter, client, prefix, replica=replica, gauge=Gauge(),
                                     clock=lambda: now[0], every_s=10, ttl_s=60)
            meter.events(events)
            meter.warm(latency)
            now[0] += 10.0
            assert reporter.maybe() is not None
            now[0] -= 10.0
        # 1,000 + 3,000 events/s, the slowest replica's 4 ms: 16 requests
        assert gate_delay(client, prefix, now_ms=1_010_000, max_age_s=60) == 16
        assert 0 < client.ttl(delay_key(prefix)) <= 60
        assert gate_delay(client, prefix, now_ms=1_000_000 + 120_000, max_age_s=60) == 0
    finally:
        client.delete(delay_key(prefix))
        client.close()
