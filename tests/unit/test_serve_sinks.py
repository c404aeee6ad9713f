"""Redis sink: one pipelined round trip per flush, tenant-prefixed keys only."""

from __future__ import annotations

import pytest

from stream_warmer.errors import SinkUnavailableError
from stream_warmer.events import WarmCommand
from stream_warmer.serve.sinks import KafkaSink, RedisSink
from stream_warmer.settings import RedisSettings
from stream_warmer.warmqueue import expiry_key, marker_key, queue_key, tenants_key
from tests.unit.serve_fakes import FakeRedis


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
