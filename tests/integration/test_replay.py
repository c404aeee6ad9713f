"""``replay`` into a uuid topic on the real broker, consumed back and compared."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer

from stream_warmer.errors import KafkaError
from stream_warmer.events import AccessEvent, EventDecoder
from stream_warmer.replay import replay

pytestmark = pytest.mark.integration


def synthetic(n: int) -> list[AccessEvent]:
    tenants = ["acme", "globex", "initech"]
    return [AccessEvent(tenants[i % 3], f"k{i * 7 % 101}", i, "get", i % 5) for i in range(n)]


def consume(bootstrap: str, topic: str, group: str, expect: int,
            timeout_s: float = 30.0) -> list[tuple[bytes, AccessEvent]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    decoder = EventDecoder()
    got: list[tuple[bytes, AccessEvent]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                assert msg.error() is None, msg.error()
                event = decoder.decode(msg.value())
                assert isinstance(event, AccessEvent), event
                got.append((msg.key(), event))
    finally:
        consumer.close()
    return got


def test_replay_round_trip(kafka_bootstrap: str, topic_factory: Callable[..., str],
                           unique: Callable[[str], str]) -> None:
    topic = topic_factory("replay", partitions=3)
    events = synthetic(3000)
    before = time.time_ns() // 1_000_000
    progress: list[int] = []
    count = replay(events, {"bootstrap.servers": kafka_bootstrap}, topic,
                   on_progress=progress.append)
    after = time.time_ns() // 1_000_000
    assert count == 3000
    assert progress[-1] == 3000
    got = consume(kafka_bootstrap, topic, unique("g"), 3000)
    assert len(got) == 3000
    assert all(key == event.tenant.encode() for key, event in got)
    for tenant in ("acme", "globex", "initech"):
        sent = [(e.key, e.size) for e in events if e.tenant == tenant]
        back = [(e.key, e.size) for _, e in got if e.tenant == tenant]
        assert back == sent  # one partition per tenant: order kept
    assert all(before <= e.ts <= after for _, e in got)  # ts rewritten to produce time


def test_replay_limit_and_stop(kafka_bootstrap: str, topic_factory: Callable[..., str],
                               unique: Callable[[str], str]) -> None:
    topic = topic_factory("replay")
    conf = {"bootstrap.servers": kafka_bootstrap}
    assert replay(synthetic(500), conf, topic, limit=120) == 120
    pulled = [0]

    def counted() -> Iterator[AccessEvent]:
        for event in synthetic(500):
            pulled[0] += 1
            yield event

    assert replay(counted(), conf, topic, stop=lambda: pulled[0] > 50) == 50
    got = consume(kafka_bootstrap, topic, unique("g"), 170)
    assert len(got) == 170


def test_replay_at_a_rate(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory("replay")
    start = time.monotonic()
    count = replay(synthetic(200), {"bootstrap.servers": kafka_bootstrap}, topic, rate=400.0)
    elapsed = time.monotonic() - start
    assert count == 200
    assert elapsed >= 199 / 400.0  # paced, not a burst


def test_undeliverable_raises_kafka_error(unique: Callable[[str], str]) -> None:
    conf = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1500}
    with pytest.raises(KafkaError, match=r"failed|undelivered"):
        replay(synthetic(10), conf, unique("nowhere"))
