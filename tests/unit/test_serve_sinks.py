"""Redis sink: one pipelined round trip per flush, tenant-prefixed keys only; the outbox."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_warmer.errors import KafkaError as StreamWarmerKafkaError
from stream_warmer.errors import SinkUnavailableError
from stream_warmer.events import WarmCommand
from stream_warmer.serve.sinks import KafkaSink, Outbox, RedisSink
from stream_warmer.settings import RedisSettings
from stream_warmer.warmqueue import expiry_key, marker_key, queue_key, tenants_key
from tests.unit.serve_fakes import FakeProducer, FakeRedis


def cmd(tenant: str, key: str, score: float = 0.5) -> WarmCommand:
    return WarmCommand(tenant, key, score, "m", "v", "events/0/1", 1, 2)


def test_one_round_trip_per_flush_and_keys_under_the_tenant_prefix() -> None:
    client = FakeRedis([])
    sink = RedisSink(client, RedisSettings(key_prefix="sw"), dedup_ttl_ms=30_000)  # type: ignore[arg-type]
    sink.write([cmd("acme", "k1"), cmd("globex", "k1"), cmd("acme", "a:b")])
    written = sink.flush()
    assert client.round_trips == 1
    assert [(c.tenant, c.key) for c in written] == [("acme", "k1"), ("acme", "a:b"),
                                                    ("globex", "k1")]
    assert sorted(client.keys_written) == sorted([
        "sw:acme:queue", "sw:acme:expires", "sw:queues", "sw:wake", "sw:acme:warm:k1",
        "sw:acme:warm:a:b", "sw:globex:queue", "sw:globex:expires", "sw:queues", "sw:wake",
        "sw:globex:warm:k1"])
    assert sink.flush() == [] and client.round_trips == 1  # nothing buffered: no trip


def test_commands_suppressed_by_a_live_marker_are_not_reported_written() -> None:
    client = FakeRedis([])
    sink = RedisSink(client, RedisSettings(key_prefix="sw"), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    client.markers.add(marker_key("sw", "acme", "k1"))
    sink.write([cmd("acme", "k1"), cmd("acme", "k2")])
    assert [c.key for c in sink.flush()] == ["k2"]


def test_a_tenant_outside_the_contract_is_never_written() -> None:
    client = FakeRedis([])
    sink = RedisSink(client, RedisSettings(key_prefix="sw"), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([cmd("evil:*", "k"), cmd("ok", "k")])
    assert [c.tenant for c in sink.flush()] == ["ok"]
    assert sink.rejected == 1
    assert all(k.startswith("sw:ok:") or k in {"sw:queues", "sw:wake"} for k in client.keys_written)


def test_redis_down_raises_and_keeps_the_commands_for_discard() -> None:
    client = FakeRedis([])
    sink = RedisSink(client, RedisSettings(), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([cmd("acme", "k1")])
    client.down = True
    with pytest.raises(SinkUnavailableError, match="redis unavailable"):
        sink.flush()
    assert [c.key for c in sink.discard()] == ["k1"]
    assert not sink.ping()


def test_key_layout() -> None:
    assert queue_key("sw", "acme") == "sw:acme:queue"
    assert marker_key("sw", "acme", "user:1") == "sw:acme:warm:user:1"
    assert expiry_key("sw", "acme") == "sw:acme:expires"
    assert tenants_key("sw") == "sw:queues"


def test_kafka_sink_keys_by_tenant() -> None:
    sent: list[tuple[str, str, bytes]] = []
    KafkaSink(lambda t, k, v: sent.append((t, k, v)), "warm").write([cmd("acme", "k1")])
    assert sent[0][:2] == ("warm", "acme") and b'"key":"k1"' in sent[0][2]


@pytest.mark.parametrize("tenant", ["acme\n", "acme\r\n"])
def test_a_tenant_with_a_trailing_newline_is_never_written(tenant: str) -> None:
    client = FakeRedis([])
    sink = RedisSink(client, RedisSettings(key_prefix="sw"), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([cmd(tenant, "k"), cmd("acme", "k2")])
    assert [c.tenant for c in sink.flush()] == ["acme"]
    assert sink.rejected == 1
    assert "sw:acme\n:queue" not in client.keys_written


def _outbox(max_bytes: int = 100) -> tuple[Outbox, FakeProducer, list[tuple[str, str]]]:
    producer = FakeProducer([], max_bytes=max_bytes)
    rejected: list[tuple[str, str]] = []
    return Outbox(producer, on_rejected=lambda t, o: rejected.append((t, o))), producer, rejected


def test_a_record_the_producer_refuses_is_counted_not_raised() -> None:
    outbox, producer, rejected = _outbox()
    outbox.produce("warm", "acme", b"x" * 200)  # raised KafkaException MSG_SIZE_TOO_LARGE
    outbox.produce("warm", "acme", b"small")
    assert [r[1] for r in producer.records] == [b"small"]
    assert rejected == [("warm", "dropped")]
    assert outbox.flush(1.0) == 0 and outbox.failed == 0


def test_a_refused_record_with_a_fallback_is_replaced_by_it() -> None:
    outbox, producer, rejected = _outbox()
    outbox.produce("dlq", "acme", b"x" * 200, fallback=b"minimal")
    assert producer.records == [("dlq", b"minimal", "acme")]
    assert rejected == [("dlq", "replaced")]
    outbox.produce("dlq", "acme", b"x" * 200, fallback=b"y" * 200)  # the fallback too
    assert rejected[1:] == [("dlq", "replaced"), ("dlq", "dropped")]


def test_a_record_the_broker_refuses_is_replaced_by_its_fallback_at_flush() -> None:
    outbox, producer, rejected = _outbox(max_bytes=10_000)
    producer.topic_max_bytes["dlq"] = 50
    outbox.produce("dlq", "acme", b"x" * 200, fallback=b"minimal")
    assert outbox.flush(1.0) == 0
    assert [r[1] for r in producer.records] == [b"x" * 200, b"minimal"]
    assert rejected == [("dlq", "replaced")] and outbox.failed == 0


def test_other_delivery_failures_and_fatal_errors_still_stop_the_app() -> None:
    outbox, producer, _ = _outbox(max_bytes=10_000)
    producer.fail_with = KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out")
    outbox.produce("warm", "acme", b"cmd")
    outbox.flush(1.0)
    assert outbox.failed == 1 and outbox.last_error == "Local: Message timed out"

    def fatal(*_args: object, **_kw: object) -> None:
        raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))

    producer.produce = fatal  # type: ignore[method-assign]
    with pytest.raises(StreamWarmerKafkaError, match="fenced"):
        outbox.produce("warm", "acme", b"cmd")
