"""10,000 hostile events among good ones through a real serve, the LSTM serving.

On the real broker and Redis: serve stays up, every partition is committed to its
end, every contract-breaking event is in the DLQ with its reason (and nothing else
is), and every good event's warm is in Redis and on the warm-commands topic.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from confluent_kafka import Producer

from stream_warmer.serve.app import ServeApp
from stream_warmer.serve.delay import delay_key
from tests.integration.serve_helpers import (
    committed,
    delete_group,
    event_bytes,
    now_ms,
    read_all,
    serve_env,
    settings_from,
)
from tests.reliability.conftest import Report
from tests.reliability.hostile import hostile
from tests.tiny_model import tiny_lstm

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

HOSTILE, GOOD, PARTITIONS = 10_000, 2_000, 2
TENANTS = ("acme", "globex", "initech", "umbrella")


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, topic_factory: Callable[..., str],
          unique: Callable[[str], str]) -> Iterator[dict[str, str]]:
    topics = {"events": topic_factory("events", PARTITIONS), "warm": topic_factory("warm", 1),
              "dlq": topic_factory("dlq", 1)}
    group, prefix = unique("serve"), unique("sw")
    env = serve_env(kafka_bootstrap, redis_url, group, topics, prefix,
                    BATCH__POLL_BATCH="1", BATCH__MAX_BATCH="1",  # one prediction per event
                    POLICY__STALE_AFTER_MS="3600000",  # events wait for the run to start
                    POLICY__TENANT_BUDGET_PER_S="1000000", POLICY__GLOBAL_BUDGET_PER_S="1000000")
    yield env | {"group": group, "prefix": prefix, "kafka": kafka_bootstrap, "redis": redis_url,
                 **{f"topic_{k}": v for k, v in topics.items()}}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)


Where = tuple[int, int]  # (partition, offset)


def _produce(kafka: str, topic: str) -> tuple[dict[Where, str], dict[Where, tuple[str, int]],
                                               dict[int, int]]:
    """The stream, good and hostile interleaved at random, on two partitions; returns
    the DLQ reason of each bad record, (tenant, key) of each good one, and the ends."""
    rng, now = random.Random(13), now_ms()
    kinds = ["good"] * GOOD + ["bad"] * HOSTILE
    rng.shuffle(kinds)
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5,
                         "message.max.bytes": 1_000_000})
    bad: dict[Where, str] = {}
    good: dict[Where, tuple[str, int]] = {}
    ends = dict.fromkeys(range(PARTITIONS), 0)
    for i, kind in enumerate(kinds):
        partition = i % PARTITIONS
        where = (partition, ends[partition])
        if kind == "good":
            tenant, key = TENANTS[i % len(TENANTS)], 1_000 + i
            value = event_bytes(tenant, str(key), now)
            good[where] = (tenant, key)
        else:
            value, reason = hostile(rng, now)
            if reason is not None:
                bad[where] = reason
        producer.produce(topic, value, b"k", partition=partition)
        ends[partition] += 1
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return bad, good, ends


def test_serve_holds_ten_thousand_hostile_events(stack: dict[str, str],
                                                 reliability: Report) -> None:
    bad, good, ends = _produce(stack["kafka"], stack["topic_events"])
    settings = settings_from({k: v for k, v in stack.items() if k.startswith("STREAM_WARMER_")})
    started = time.monotonic()
    stats = ServeApp(settings, tiny_lstm("hostile")).run(idle_timeout_s=3.0)
    seconds = time.monotonic() - started

    total = HOSTILE + GOOD
    assert committed(stack["kafka"], stack["group"], stack["topic_events"], PARTITIONS) == ends
    assert (stats.consumed, stats.bad) == (total, len(bad))
    letters = read_all(stack["kafka"], stack["topic_dlq"], len(bad), timeout_s=60)
    assert {(v["partition"], v["offset"]): v["reason"] for _k, v, _p, _o in letters} == bad
    assert len(letters) == len(bad)  # nothing dead-lettered twice, nothing good at all

    topic = stack["topic_events"]
    expected = {(tenant, str(key + 1), f"{topic}/{p}/{o}")
                for (p, o), (tenant, key) in good.items()}
    warms = read_all(stack["kafka"], stack["topic_warm"], stats.commands, timeout_s=60)
    on_topic = {(v["tenant"], v["key"], v["source"]) for _k, v, _p, _o in warms}
    assert expected <= on_topic
    client = redis.Redis.from_url(stack["redis"], decode_responses=True)
    try:
        for tenant in TENANTS:
            queued = set(client.zrange(f"{stack['prefix']}:{tenant}:queue", 0, -1))
            assert {key for t, key, _s in expected if t == tenant} <= queued
        keys = set(client.scan_iter(f"{stack['prefix']}:*", count=1000))
        # serve's own keys live under "{prefix}::" (the delay it reports, once a run
        # lasts a report interval: whether this one did depends on the machine)
        assert keys - {delay_key(stack["prefix"])} == {
            k for k in keys if not k.startswith(f"{stack['prefix']}::")}
        tenants = {k.split(":")[1] for k in keys if not k.startswith(f"{stack['prefix']}::")}
        assert tenants <= {*TENANTS, "odd", "queues", "wake"}  # no key outside a tenant
    finally:
        client.close()
    reliability(load=f"{total:,} events, {PARTITIONS} partitions, real serve (LSTM), "
                     f"{total / seconds:,.0f} events/s",
                bad_inputs=f"{HOSTILE:,} hostile ({len(bad):,} contract-breaking, "
                           f"{len(set(bad.values()))} reasons; the rest odd but valid)",
                lost=len(expected - on_topic))
