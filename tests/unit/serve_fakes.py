"""Fakes for the serve unit tests: a clock, a strategy, Kafka and Redis clients.

Every fake appends to a shared ``log`` so tests can check the order of side effects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from stream_warmer.events import AccessEvent, encode
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window


class FakeClock:
    """Monotonic seconds that move only when told (or by ``step`` per read)."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class PlusOne(WarmingStrategy):
    """Predicts key+1 for integer keys with a fixed score; counts what it was asked."""

    name = "plusone"

    def __init__(self, score: float = 0.9, version: str = "v1") -> None:
        self.score = score
        self.version = version
        self.observed: list[AccessEvent] = []
        self.predicted: list[list[str]] = []
        self.forgotten: list[str] = []

    @property
    def model_version(self) -> str:
        return self.version

    def observe(self, event: AccessEvent) -> None:
        self.observed.append(event)

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        self.predicted.append([w.events[-1].key for w in windows])
        return [[Prediction(str(int(w.events[-1].key) + i), self.score) for i in range(1, k + 1)]
                for w in windows]

    def forget(self, tenants: Any) -> None:
        self.forgotten.extend(tenants)


def message(partition: int, offset: int, value: bytes | None, topic: str = "events",
            key: bytes | None = b"acme") -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=value)


def event_value(tenant: str, key: str, ts: int) -> bytes:
    return encode(AccessEvent(tenant, key, ts))


class FakeConsumer:
    """Hands out pre-built messages in batches; records offsets, commits, pauses, seeks."""

    def __init__(self, log: list[str], messages: list[Message], partitions: int = 2,
                 topic: str = "events") -> None:
        self.log = log
        self.queue = list(messages)
        self.history = list(messages)
        self.topic = topic
        self.assigned = [TopicPartition(topic, p) for p in range(partitions)]
        self.stored: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.paused: set[int] = set()
        self.seeks: list[tuple[int, int]] = []
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.before_consume: Callable[[FakeConsumer], None] | None = None
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks
        callbacks["on_assign"](self, self.assigned)

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        if self.before_consume is not None:
            self.before_consume(self)
        out = []
        rest = []
        for msg in self.queue:
            if len(out) < num_messages and msg.partition() not in self.paused:
                out.append(msg)
            else:
                rest.append(msg)
        self.queue = rest
        return out

    def poll(self, timeout: float) -> Message | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self.stored[tp.partition] = tp.offset
        self.log.append("store")

    def commit(self, asynchronous: bool = True) -> None:
        assert asynchronous is False
        self.committed.update(self.stored)
        self.log.append("commit")

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}
        self.log.append("pause")

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}
        self.log.append("resume")

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.log.append("seek")
        self.queue = [m for m in self.queue if m.partition() != tp.partition]
        self.queue += [m for m in self.history
                       if m.partition() == tp.partition and m.offset() >= tp.offset]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, 100)

    def close(self) -> None:
        # like librdkafka: leaving the group revokes what is assigned
        self.log.append("close")
        self.callbacks["on_revoke"](self, self.assigned)
        self.closed = True

    def revoke(self, partitions: list[int]) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(self.topic, p) for p in partitions])


class FakeProducer:
    """Records produced records; ``flush`` logs itself.

    Like librdkafka, ``produce`` refuses a record over ``max_bytes`` (key + value) with
    ``MSG_SIZE_TOO_LARGE``; ``topic_max_bytes`` makes the broker refuse larger records
    on a topic in their delivery report, and ``fail_with`` fails every delivery.
    """

    def __init__(self, log: list[str], max_bytes: int = 1_000_000) -> None:
        self.log = log
        self.max_bytes = max_bytes
        self.records: list[tuple[str, bytes, str]] = []
        self.refused: list[tuple[str, bytes, str]] = []
        self.fail_with: KafkaError | None = None
        self.topic_max_bytes: dict[str, int] = {}
        self._reports: list[tuple[Any, str, int]] = []

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any = None) -> None:
        size = len(value) + len(key.encode())
        if size > self.max_bytes:
            self.refused.append((topic, value, key))
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.records.append((topic, value, key))
        if on_delivery is not None:
            self._reports.append((on_delivery, topic, size))

    def poll(self, timeout: float) -> int:
        reports, self._reports = self._reports, []
        for report, topic, size in reports:
            err = self.fail_with
            if err is None and size > self.topic_max_bytes.get(topic, size):
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
            report(err, None)
        return len(reports)

    def flush(self, timeout: float) -> int:
        self.log.append("producer.flush")
        self.poll(0)
        return 0

    def on(self, topic: str) -> list[tuple[str, bytes, str]]:
        return [r for r in self.records if r[0] == topic]


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self.client = client
        self.calls: list[tuple[Any, ...]] = []

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> None:
        self.calls.append((sha, numkeys, *args))

    def execute(self) -> list[list[int]]:
        self.client.log.append("redis.execute")
        if self.client.down:
            raise redis.ConnectionError("connection refused")
        self.client.round_trips += 1
        results = []
        for _sha, numkeys, *args in self.calls:
            keys = args[:numkeys]
            self.client.keys_written.extend(keys)
            flags = []
            for marker in keys[4:]:  # after queue, expires, tenants, wake (warmqueue.ENQUEUE)
                flags.append(0 if marker in self.client.markers else 1)
                self.client.markers.add(marker)
            results.append(flags)
        return results


class FakeRedis:
    """Enough of redis.Redis for RedisSink: script_load, pipeline, ping."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.down = False
        self.round_trips = 0
        self.keys_written: list[str] = []
        self.markers: set[str] = set()

    def script_load(self, script: str) -> str:
        if self.down:
            raise redis.ConnectionError("connection refused")
        return "sha"

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        assert transaction is False
        return FakePipeline(self)

    def ping(self) -> bool:
        if self.down:
            raise redis.ConnectionError("connection refused")
        return True

    def close(self) -> None:
        pass


class FakeClients:
    """The ``Clients`` factory of ServeApp, returning the fakes above."""

    def __init__(self, consumer: FakeConsumer, producer: FakeProducer, client: FakeRedis) -> None:
        self._consumer, self._producer, self._redis = consumer, producer, client

    def consumer(self, conf: dict[str, Any]) -> FakeConsumer:
        assert conf["enable.auto.commit"] is False
        assert conf["enable.auto.offset.store"] is False
        return self._consumer

    def producer(self, conf: dict[str, Any]) -> FakeProducer:
        return self._producer

    def redis(self, settings: Any) -> FakeRedis:
        return self._redis
