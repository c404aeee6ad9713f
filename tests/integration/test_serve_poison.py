"""The poison pills of issue 13 through a real serve (LSTM serving) on the real stack.

Before the fix a 900 KB non-JSON event crash-looped serve (its dead letter was over
the broker's size limit) and a key of Unicode digits ("²") raised ValueError in the
LSTM's feature tracker; a tenant "acme\\n" was accepted. Here they sit among good
events: serve must stay up, commit past all of them, dead-letter the bad ones with
their reason (the large one truncated), and warm the good ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import msgspec
import pytest
import redis

from stream_warmer.serve.app import ServeApp
from tests.integration.serve_helpers import (
    committed,
    delete_group,
    event_bytes,
    now_ms,
    produce,
    read_all,
    serve_env,
    settings_from,
)
from tests.tiny_model import tiny_lstm

pytestmark = pytest.mark.integration

BIG = b"\x00not json " + bytes(range(256)) * 3515  # ~900 KB, under the broker's 1 MB
GOOD_PER_TENANT = 20


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, topic_factory: Callable[..., str],
          unique: Callable[[str], str]) -> Iterator[dict[str, str]]:
    topics = {"events": topic_factory("events", 1), "warm": topic_factory("warm", 1),
              "dlq": topic_factory("dlq", 1)}
    group, prefix = unique("serve"), unique("sw")
    env = serve_env(kafka_bootstrap, redis_url, group, topics, prefix,
                    BATCH__POLL_BATCH="1", BATCH__MAX_BATCH="1",
                    POLICY__STALE_AFTER_MS="600000")  # events wait for the group join
    yield env | {"group": group, "prefix": prefix, "kafka": kafka_bootstrap, "redis": redis_url,
                 **{f"topic_{k}": v for k, v in topics.items()}}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)


def _records() -> tuple[list[tuple[str, bytes]], dict[int, str], dict[int, tuple[str, int]]]:
    """Good events of two tenants with the pills among them; offset -> DLQ reason of the
    bad ones; offset -> (tenant, integer key) of the good events with integer keys."""
    records: list[tuple[str, bytes]] = []
    bad: dict[int, str] = {}
    numbered: dict[int, tuple[str, int]] = {}
    pills = {3: ("acme", BIG, "not_json"),
             5: ("acme", event_bytes("acme", "²"), None),
             7: ("globex", event_bytes("globex", "١٢"), None),
             9: ("acme", msgspec.json.encode({"tenant": "acme\n", "key": "1", "ts": now_ms()}),
                 "bad_tenant"),
             11: ("acme", event_bytes("acme", "1", now_ms() + 3_600_000), "future_ts")}
    for i in range(GOOD_PER_TENANT):
        for tenant in ("acme", "globex"):
            numbered[len(records)] = (tenant, 100 + i)
            records.append((tenant, event_bytes(tenant, str(100 + i))))
        if i in pills:
            tenant, value, reason = pills[i]
            if reason is not None:
                bad[len(records)] = reason
            records.append((tenant, value))
    return records, bad, numbered


def test_serve_survives_the_poison_pills_and_commits_past_them(stack: dict[str, str]) -> None:
    records, bad, numbered = _records()
    produce(stack["kafka"], stack["topic_events"], records)
    settings = settings_from({k: v for k, v in stack.items() if k.startswith("STREAM_WARMER_")})
    app = ServeApp(settings, tiny_lstm("poison"))
    stats = app.run(idle_timeout_s=3.0)  # a pill raised out of here before the fix

    assert committed(stack["kafka"], stack["group"], stack["topic_events"], 1) == {
        0: len(records)}
    assert (stats.consumed, stats.bad) == (len(records), len(bad))
    assert stats.events == len(records) - len(bad)

    letters = {v["offset"]: v for _k, v, _p, _o in read_all(stack["kafka"], stack["topic_dlq"],
                                                           len(bad))}
    assert {offset: v["reason"] for offset, v in letters.items()} == bad
    big = letters[next(o for o, r in bad.items() if r == "not_json")]
    original = msgspec.json.decode(msgspec.json.encode(big["original"]), type=bytes)
    assert big["truncated"] and BIG.startswith(original) and 40_000 < len(original) < len(BIG)
    assert big["original_size"] == len(BIG)
    assert big["original_sha256"] == hashlib.sha256(BIG).hexdigest()
    assert len(msgspec.json.encode(big)) <= settings.events.dead_letter_max_bytes

    # an untrained model still names key+1 after each integer key (every candidate
    # class does): each good event warms its successor, the pills warm nothing
    expected = {(tenant, str(key + 1), f"{stack['topic_events']}/0/{offset}")
                for offset, (tenant, key) in numbered.items()}
    warms = read_all(stack["kafka"], stack["topic_warm"], len(expected))
    assert {(v["tenant"], v["key"], v["source"]) for _k, v, _p, _o in warms} == expected
    assert len(warms) == stats.commands == len(expected)
    client = redis.Redis.from_url(stack["redis"], decode_responses=True)
    try:
        for tenant in ("acme", "globex"):
            queued = set(client.zrange(f"{stack['prefix']}:{tenant}:queue", 0, -1))
            assert queued == {key for t, key, _source in expected if t == tenant}
        prefixes = {k.split(":")[1] for k in client.scan_iter(f"{stack['prefix']}:*")}
        assert prefixes == {"acme", "globex", "queues", "wake"}  # nothing under "acme\n"
    finally:
        client.close()
