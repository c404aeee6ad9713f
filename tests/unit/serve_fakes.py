"""Fakes for the serve unit tests: a clock, a strategy, Kafka (``kafka_fakes``) and Redis
clients, and a ServeApp built over them.

Every fake appends to a shared ``log`` so tests can check the order of side effects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from confluent_kafka import Message

from stream_warmer.events import AccessEvent, encode
from stream_warmer.serve.app import ServeApp
from stream_warmer.settings import Settings, load_settings
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from tests.unit.kafka_fakes import FakeConsumer, FakeProducer

__all__ = ["NOW_MS", "FakeClients", "FakeClock", "FakeConsumer", "FakeProducer", "FakeRedis",
           "PlusOne", "build", "event_value", "message", "serve_settings", "stream"]

NOW_MS = 1_800_000_000_000


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
        self._consumer.on_commit = conf["on_commit"]
        strategy = conf.get("partition.assignment.strategy", "range,roundrobin")  # librdkafka's
        self._consumer.cooperative = strategy == "cooperative-sticky"
        return self._consumer

    def producer(self, conf: dict[str, Any]) -> FakeProducer:
        return self._producer

    def redis(self, settings: Any) -> FakeRedis:
        return self._redis


def serve_settings(**env: str) -> Settings:
    """Settings of the serve unit tests: topics events/warm/dlq, no HTTP, long intervals."""
    base = {"METRICS__ENABLED": "false", "TOPICS__ACCESS_EVENTS": "events",
            "TOPICS__WARM_COMMANDS": "warm", "TOPICS__DEAD_LETTER": "dlq",
            "BATCH__CHECKPOINT_INTERVAL_S": "600", "BATCH__MAX_DELAY_MS": "60000"}
    return load_settings(None, {f"STREAM_WARMER_{k}": v for k, v in (base | env).items()})


def build(messages: list[Message], strategy: PlusOne | None = None,
          clock: FakeClock | None = None, source: Callable[[], Any] | None = None,
          **env: str) -> tuple[ServeApp, list[str], FakeConsumer, FakeProducer, FakeRedis,
                               PlusOne]:
    """A ServeApp over fresh fakes sharing one log; ``env`` overrides ``serve_settings``."""
    log: list[str] = []
    consumer, producer, client = FakeConsumer(log, messages), FakeProducer(log), FakeRedis(log)
    strategy = strategy or PlusOne()
    app = ServeApp(serve_settings(**env), strategy,
                   clients=FakeClients(consumer, producer, client),
                   clock=clock or FakeClock(), wall_ms=lambda: NOW_MS, strategy_source=source)
    return app, log, consumer, producer, client, strategy


def stream() -> list[Message]:
    """acme: keys 1..5 on partition 0; globex: keys 10..12 on partition 1."""
    acme = [message(0, i, event_value("acme", str(i + 1), NOW_MS)) for i in range(5)]
    globex = [message(1, i, event_value("globex", str(i + 10), NOW_MS), key=b"globex")
              for i in range(3)]
    return acme + globex
