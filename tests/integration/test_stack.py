"""The real stack: topics on the broker, a produce/consume round trip, a consumer
group splitting partitions, and a Redis round trip."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from stream_warmer.settings import KafkaSettings, TopicSettings
from stream_warmer.topics import create_topics, describe_topics, topic_specs

pytestmark = pytest.mark.integration


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )


def test_topics_create_is_idempotent(kafka_bootstrap: str, unique: Callable[[str], str]) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    topics = TopicSettings(
        access_events=unique("ae"),
        warm_commands=unique("wc"),
        dead_letter=unique("dlq"),
        model_updates=unique("mu"),
        partitions=3,
    )
    names = [s.name for s in topic_specs(topics)]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        assert set(create_topics(kafka, topics).values()) == {"created"}
        assert set(create_topics(kafka, topics).values()) == {"exists"}
        parts = describe_topics(kafka, names)
        assert parts[topics.access_events] == 3
        assert parts[topics.model_updates] == 1
        res = ConfigResource(ConfigResource.Type.TOPIC, topics.model_updates)
        conf = admin.describe_configs([res])[res].result(timeout=10)
        assert conf["cleanup.policy"].value == "compact"
    finally:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.result(timeout=30)


def test_produce_consume_round_trip(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("rt", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(50)}
    for key, value in sent.items():
        producer.produce(topic, value, key)
    assert producer.flush(10) == 0
    consumer = _consumer(kafka_bootstrap, f"g-{uuid.uuid4().hex}")
    consumer.subscribe([topic])
    got: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 30
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got[msg.key()] = msg.value()
    finally:
        consumer.close()
    assert got == sent


def test_two_consumers_split_four_partitions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("split", partitions=4)
    group = f"g-{uuid.uuid4().hex}"
    a, b = _consumer(kafka_bootstrap, group), _consumer(kafka_bootstrap, group)
    a.subscribe([topic])
    b.subscribe([topic])
    deadline = time.monotonic() + 45
    try:
        while time.monotonic() < deadline:
            a.poll(0.2)
            b.poll(0.2)
            pa = {p.partition for p in a.assignment()}
            pb = {p.partition for p in b.assignment()}
            if len(pa) == 2 and len(pb) == 2:
                break
        assert pa | pb == {0, 1, 2, 3}
        assert not pa & pb
        assert len(pa) == len(pb) == 2
    finally:
        a.close()
        b.close()


def test_redis_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"sw-test:{uuid.uuid4().hex}"
    try:
        client.zadd(key, {"a": 0.2, "b": 0.9})
        assert client.zrevrange(key, 0, -1) == [b"b", b"a"]
    finally:
        client.delete(key)
