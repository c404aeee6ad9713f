"""Replay without a broker: pacing on a fake clock, and a fake producer."""

from __future__ import annotations

from typing import Any

import confluent_kafka
import msgspec
import pytest

from stream_warmer.errors import KafkaError
from stream_warmer.events import AccessEvent
from stream_warmer.replay import Pacer, replay


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.naps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


def test_rate_pacing() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=10.0, clock=clock, sleep=clock.sleep)
    for i in range(5):
        pacer.wait(i, ts=0, stop=lambda: False)
    assert clock.now == pytest.approx(100.4)  # events at 0, .1, .2, .3, .4 s
    assert max(clock.naps) <= 0.1


def test_speedup_follows_trace_time() -> None:
    clock = FakeClock()
    pacer = Pacer(speedup=2.0, clock=clock, sleep=clock.sleep)
    for i, ts in enumerate([5_000, 5_000, 7_000, 9_000]):  # ms
        pacer.wait(i, ts, stop=lambda: False)
    assert clock.now == pytest.approx(102.0)  # 4 s of trace at 2x


def test_stop_interrupts_a_long_wait() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=0.001, clock=clock, sleep=clock.sleep)
    pacer.wait(0, 0, stop=lambda: False)
    pacer.wait(1, 0, stop=lambda: clock.now > 101)  # due in 1000 s
    assert clock.now < 101.2


def test_pacer_arguments() -> None:
    with pytest.raises(ValueError, match="not both"):
        Pacer(rate=1, speedup=1)
    with pytest.raises(ValueError, match="> 0"):
        Pacer(rate=0)
    assert not Pacer().paced


class FakeProducer:
    instances: list[FakeProducer] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.full_once = True
        FakeProducer.instances.append(self)

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        if self.full_once and len(self.sent) == 3:
            self.full_once = False
            raise BufferError("queue full")
        self.sent.append((topic, value, key))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def test_replay_keys_by_tenant_and_rewrites_ts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    events = [AccessEvent(f"t{i % 2}", str(i), i, "get", 1) for i in range(6)]
    count = replay(events, {"bootstrap.servers": "x", "linger.ms": 5}, "topic",
                   now_ms=lambda: 1_700_000_000_000)
    producer = FakeProducer.instances[-1]
    assert count == 6
    assert producer.conf["linger.ms"] == 5  # the caller's options win
    assert producer.conf["compression.type"] == "lz4"
    assert [key for _, _, key in producer.sent] == [b"t0", b"t1"] * 3
    decoded = [msgspec.json.decode(v, type=AccessEvent) for _, v, _ in producer.sent]
    assert [e.key for e in decoded] == [str(i) for i in range(6)]  # the full queue was retried
    assert {e.ts for e in decoded} == {1_700_000_000_000}


def test_replay_raises_on_undelivered(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stuck(FakeProducer):
        def flush(self, _timeout: float) -> int:
            return 2

    monkeypatch.setattr(confluent_kafka, "Producer", Stuck)
    with pytest.raises(KafkaError, match="2 events"):
        replay([AccessEvent("t", "k", 0)], {}, "topic")
