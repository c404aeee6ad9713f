"""Redis sink: one pipelined round trip per flush, tenant-prefixed keys only, which
replies are an outage; the outbox. (The Lua scripts run against a real Redis in
tests/integration/test_serve_redis_faults.py; the outage's backoff is
tests/unit/test_serve_outage.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from redis._parsers.base import BaseParser

from stream_warmer.errors import KafkaError as StreamWarmerKafkaError
from stream_warmer.errors import SinkUnavailableError
from stream_warmer.events import WarmCommand
from stream_warmer.redisfaults import unavailable
from stream_warmer.serve.outbox import Outbox
from stream_warmer.serve.sinks import KafkaSink, RedisSink
from stream_warmer.settings import RedisSettings
from stream_warmer.warmqueue import (
    ENQUEUE,
    PROBE,
    QUEUE_GRACE_MS,
    QUEUE_MAX_LIFE_MS,
    QUEUED,
    REQUEUED,
    SUPPRESSED,
    expiry_key,
    marker_key,
    queue_key,
    queue_life_ms,
    tenants_key,
)
from tests.unit.serve_fakes import FakeClock, FakeProducer, FakeRedis


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


# ---------------------------------------------------------------------- re-handled causes
class ScriptedRedis:
    """A client whose pipelines answer with ``replies`` (or raise ``error``); records the
    ``evalsha`` calls and the scripts loaded."""

    def __init__(self, replies: list[Any] | None = None) -> None:
        self.replies = replies or []
        self.error: Exception | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.loaded: dict[str, str] = {}

    def script_load(self, script: str) -> str:
        self.loaded[f"sha{len(self.loaded)}"] = script
        return f"sha{len(self.loaded) - 1}"

    def pipeline(self, transaction: bool = True) -> ScriptedRedis:
        return self

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> None:
        self.calls.append((self.loaded[sha], numkeys, *args))

    def execute(self) -> list[Any]:
        if self.error is not None:
            raise self.error
        return self.replies


def test_commands_of_a_re_handled_cause_are_reported_written_again() -> None:
    client = ScriptedRedis([[REQUEUED, SUPPRESSED, QUEUED]])
    sink = RedisSink(client, RedisSettings(key_prefix="sw"), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([cmd("acme", "k1"), cmd("acme", "k2"), cmd("acme", "k3")])
    assert [c.key for c in sink.flush()] == ["k1", "k3"]
    assert sink.requeued == 1
    script, numkeys, *args = client.calls[0]
    assert script == ENQUEUE and numkeys == 4 + 3
    argv = args[numkeys:]
    assert argv[:4] == [1000, 10_000, "acme", queue_life_ms([1])]
    assert argv[4:9] == ["0.5", "k1", 2, argv[7], "events/0/1"]  # score key expires json source
    assert b'"source":"events/0/1"' in argv[7]


def test_queue_keys_live_as_long_as_the_longest_lived_entry_plus_a_grace() -> None:
    assert queue_life_ms([10_000, 2_000]) == 10_000 + QUEUE_GRACE_MS
    assert queue_life_ms([-5, 0]) == QUEUE_GRACE_MS  # no lifetime (expires_at 0): grace only
    assert queue_life_ms([10**15]) == QUEUE_MAX_LIFE_MS
    client = ScriptedRedis([[QUEUED], [QUEUED, QUEUED]])
    sink = RedisSink(client, RedisSettings(), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([WarmCommand("a", "k", 0.5, "m", "v", "e/0/1", 100, 5_100),
                WarmCommand("b", "k", 0.5, "m", "v", "e/0/2", 100, 600),
                WarmCommand("b", "j", 0.5, "m", "v", "e/0/3", 100, 30_100)])
    sink.flush()
    lives = [call[2 + call[1] + 3] for call in client.calls]  # ARGV[4] of each tenant
    assert lives == [5_000 + QUEUE_GRACE_MS, 30_000 + QUEUE_GRACE_MS]


# ---------------------------------------------------------------------- which replies are an outage
def reply(text: str) -> redis.RedisError:
    """The exception redis-py raises for the error reply ``text``."""
    exc: redis.RedisError = BaseParser.parse_error(text)
    return exc


def in_pipeline(exc: redis.RedisError, command: str) -> redis.RedisError:
    """``exc`` as a pipeline raises it (redis-py quotes the command first)."""
    exc.args = (f"Command # 1 ({command}) of pipeline caused error: {exc.args[0]}",)
    return exc


BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


@pytest.mark.parametrize("exc", [
    redis.ConnectionError("refused"), redis.TimeoutError("slow"),
    reply("READONLY You can't write against a read only replica."),
    reply("OOM command not allowed when used memory > 'maxmemory'."),
    reply("LOADING Redis is loading the dataset in memory"),
    reply(BUSY), in_pipeline(reply(BUSY), "EVALSHA sha 5 sw:acme:queue"),
    reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    reply("NOREPLICAS Not enough good replicas to write."),
], ids=repr)
def test_failover_oom_busy_and_loading_replies_are_an_outage(exc: redis.RedisError) -> None:
    assert unavailable(exc)


@pytest.mark.parametrize("exc", [
    reply(WRONGTYPE), reply("NOSCRIPT No matching script. Please use EVAL."),
    reply("ERR Error running script (call to f_1): @user_script:3: bad"),
    in_pipeline(reply(WRONGTYPE), "EVALSHA sha 5 sw:x:warm:of pipeline caused error: BUSY k"),
    redis.DataError("bad argument"), ValueError("not redis"),
], ids=repr)
def test_other_error_replies_are_bugs_not_outages(exc: Exception) -> None:
    assert not unavailable(exc)


@pytest.mark.parametrize("text", ["READONLY You can't write against a read only replica.",
                                  "OOM command not allowed", BUSY])
def test_a_failover_oom_or_busy_reply_pauses_serve_instead_of_ending_it(text: str) -> None:
    client = ScriptedRedis()
    sink = RedisSink(client, RedisSettings(), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([cmd("acme", "k1")])
    client.error = in_pipeline(reply(text), "EVALSHA sha0 5 sw:acme:queue")
    with pytest.raises(SinkUnavailableError, match="redis unavailable"):
        sink.flush()
    assert [c.key for c in sink.discard()] == ["k1"]
    assert sink.ping() is False  # the probe is a write: refused the same way
    client.error = None
    assert sink.ping() is True
    assert client.calls[-1][:3] == (PROBE, 1, "sw:probe")


def test_any_other_error_reply_still_raises_and_keeps_the_commands() -> None:
    client = ScriptedRedis()
    sink = RedisSink(client, RedisSettings(), dedup_ttl_ms=1000)  # type: ignore[arg-type]
    sink.write([cmd("acme", "k1")])
    client.error = reply(WRONGTYPE)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sink.flush()
    assert len(sink) == 1
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sink.ping()


# ---------------------------------------------------------------------- outbox: a full queue
class FullProducer(FakeProducer):
    """Its local queue is full (``BufferError``) until ``room`` is set."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__([])
        self.clock, self.room, self.polls = clock, False, 0

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any = None) -> None:
        if not self.room:
            raise BufferError("Local: Queue full")
        super().produce(topic, value, key, on_delivery)

    def poll(self, timeout: float) -> int:
        self.polls += 1
        self.clock.advance(timeout)
        return super().poll(0)


def test_a_queue_that_stays_full_fails_the_record_after_max_block_s() -> None:
    clock = FakeClock()
    producer = FullProducer(clock)
    outbox = Outbox(producer, max_block_s=1.0, clock=clock)
    outbox.produce("warm", "acme", b"cmd")  # returns: the loop must not hang
    assert outbox.failed == 1 and "queue stayed full" in (outbox.last_error or "")
    assert 15 <= producer.polls <= 25  # served deliveries for ~1 s in 0.05 s polls
    polls = producer.polls
    outbox.produce("warm", "acme", b"cmd2")  # once failed, a full queue fails at once
    assert outbox.failed == 2 and producer.polls == polls and producer.records == []


def test_a_stop_request_ends_the_wait_for_room() -> None:
    clock = FakeClock()
    producer = FullProducer(clock)
    stop = {"asked": False}

    def stopping() -> bool:
        stop["asked"] = stop["asked"] or producer.polls >= 3  # SIGTERM while waiting
        return stop["asked"]

    outbox = Outbox(producer, stopping=stopping, max_block_s=1e9, clock=clock)
    outbox.produce("dlq", "acme", b"letter", fallback=b"minimal")
    assert producer.polls == 3 and outbox.failed == 1  # not delivered: nothing commits


def test_a_queue_that_frees_up_in_time_loses_nothing() -> None:
    clock = FakeClock()
    producer = FullProducer(clock)
    original = producer.poll

    def poll(timeout: float) -> int:
        producer.room = producer.polls >= 4
        return original(timeout)

    producer.poll = poll  # type: ignore[method-assign]
    outbox = Outbox(producer, max_block_s=1.0, clock=clock)
    outbox.produce("warm", "acme", b"cmd")
    assert producer.records == [("warm", b"cmd", "acme")] and outbox.failed == 0
