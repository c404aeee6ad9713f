"""serve end to end on the real broker and Redis: successor pattern -> warm commands; DLQ."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator

import msgspec
import pytest
import redis

from stream_warmer.serve.app import ServeApp
from stream_warmer.strategies import build_baseline
from stream_warmer.warmqueue import expiry_key, tenants_key, wake_key
from tests.integration.serve_helpers import (
    committed,
    delete_group,
    event_bytes,
    produce,
    read_all,
    serve_env,
    settings_from,
)

pytestmark = pytest.mark.integration

TENANTS = ("acme", "globex")
CYCLE = 5
ROUNDS = 4


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, topic_factory: Callable[..., str],
          unique: Callable[[str], str]) -> Iterator[dict[str, str]]:
    topics = {"events": topic_factory("events", 1), "warm": topic_factory("warm", 1),
              "dlq": topic_factory("dlq", 1)}
    group, prefix = unique("serve"), unique("sw")
    # a 30 s dedup (the default is a 50 ms burst filter): the pattern test counts on
    # the later rounds being suppressed
    env = serve_env(kafka_bootstrap, redis_url, group, topics, prefix,
                    BATCH__POLL_BATCH="1", BATCH__MAX_BATCH="1", POLICY__DEDUP_TTL_S="30")
    yield env | {"group": group, "prefix": prefix, "kafka": kafka_bootstrap, "redis": redis_url,
                 **{f"topic_{k}": v for k, v in topics.items()}}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)


def _pattern() -> list[tuple[str, bytes]]:
    """Each tenant cycles k0..k4, interleaved with the other tenant."""
    records = []
    for i in range(CYCLE * ROUNDS):
        for tenant in TENANTS:
            records.append((tenant, event_bytes(tenant, f"k{i % CYCLE}")))
    return records


def _serve(env: dict[str, str], **run: float) -> ServeApp:
    settings = settings_from({k: v for k, v in env.items() if k.startswith("STREAM_WARMER_")})
    app = ServeApp(settings, build_baseline("markov", settings.strategy))
    app.run(**run)  # type: ignore[arg-type]
    return app


def test_successor_pattern_gives_the_expected_warm_commands(stack: dict[str, str]) -> None:
    records = _pattern()
    produce(stack["kafka"], stack["topic_events"], records)
    app = _serve(stack, idle_timeout_s=3.0)

    # markov learns k4 -> k0 at the tenant's 6th event; from then on each event of the
    # second round names its successor once (dedup suppresses the later rounds)
    expected = set()
    for offset, (tenant, _value) in enumerate(records):
        j = offset // len(TENANTS)
        if CYCLE <= j < 2 * CYCLE:
            expected.add((tenant, f"k{(j + 1) % CYCLE}", f"{stack['topic_events']}/0/{offset}"))

    on_topic = read_all(stack["kafka"], stack["topic_warm"], len(expected))
    got = {(v["tenant"], v["key"], v["source"]) for _k, v, _p, _o in on_topic}
    assert got == expected
    assert len(on_topic) == len(expected)
    assert all(k == v["tenant"] and v["score"] == 1.0 and v["strategy"] == "markov"
               for k, v, _p, _o in on_topic)

    client = redis.Redis.from_url(stack["redis"], decode_responses=True)
    for tenant in TENANTS:
        queue = client.zrange(f"{stack['prefix']}:{tenant}:queue", 0, -1, withscores=True)
        assert sorted(queue) == [(f"k{i}", 1.0) for i in range(CYCLE)]
        marker = client.get(f"{stack['prefix']}:{tenant}:warm:k1")
        assert marker is not None and msgspec.json.decode(marker)["tenant"] == tenant
        assert 0 < client.pttl(f"{stack['prefix']}:{tenant}:warm:k1") <= 30_000
    keys = set(client.scan_iter(f"{stack['prefix']}:*"))
    shared = {tenants_key(stack["prefix"]), wake_key(stack["prefix"])}
    assert shared <= keys  # the loaders' index of queues and their wake list
    assert {k.split(":")[1] for k in keys - shared} == set(TENANTS)
    assert client.hget(expiry_key(stack["prefix"], "acme"), "k1") is not None
    client.close()

    assert app.stats.commands == len(expected)
    assert committed(stack["kafka"], stack["group"], stack["topic_events"], 1) == {0: len(records)}
    # every warmed key is the tenant's next request: all warms are useful
    text = app.metrics.render().decode()
    assert f"stream_warmer_useful_warms_total {float(len(expected))}" in text
    assert "stream_warmer_warm_precision 1.0" in text


BAD = [
    (b"{not json", "not_json"),
    (b'{"tenant": "acme", "key": 42, "ts": 1}', "schema"),
    (b'{"tenant": "acme", "ts": 1}', "schema"),
    (b'{"tenant": "bad tenant!", "key": "k", "ts": 1}', "bad_tenant"),
    (b'{"tenant": "acme", "key": "' + b"x" * 600 + b'", "ts": 1}', "key_too_long"),
    (b'{"tenant": "acme", "key": "k", "ts": 1, "size": -1}', "bad_size"),
    (b'{"tenant": "acme", "key": "k", "ts": 1e400}', "bad_ts"),
    (b'{"tenant": "acme", "key": "k", "ts": 1, "op": "put"}', "schema"),
]


def test_bad_events_go_to_the_dead_letter_topic_while_good_ones_flow(
    stack: dict[str, str],
) -> None:
    good = _pattern()
    records: list[tuple[str, bytes]] = []
    for i, rec in enumerate(good):
        records.append(rec)
        if i % 5 == 2 and i // 5 < len(BAD):
            records.append(("acme", BAD[i // 5][0]))
    produce(stack["kafka"], stack["topic_events"], records)
    app = _serve(stack, idle_timeout_s=3.0)

    letters = read_all(stack["kafka"], stack["topic_dlq"], len(BAD))
    assert len(letters) == len(BAD)
    by_offset = {v["offset"]: v for _k, v, _p, _o in letters}
    for offset, (_key, value) in enumerate(records):
        if value in dict(BAD):
            letter = by_offset.pop(offset)
            assert letter["reason"] == dict(BAD)[value]
            assert letter["topic"] == stack["topic_events"] and letter["partition"] == 0
            assert msgspec.json.decode(msgspec.json.encode(letter["original"]), type=bytes) == value
    assert by_offset == {}
    assert app.stats.bad == len(BAD) and app.stats.events == len(good)
    assert app.stats.commands == CYCLE * len(TENANTS)  # the good events still warm
    text = app.metrics.render().decode()
    assert 'stream_warmer_bad_events_total{reason="schema"} 3.0' in text
    assert committed(stack["kafka"], stack["group"], stack["topic_events"], 1) == {0: len(records)}


def test_metrics_and_healthz_are_served(stack: dict[str, str]) -> None:
    produce(stack["kafka"], stack["topic_events"], _pattern())
    settings = settings_from({k: v for k, v in stack.items() if k.startswith("STREAM_WARMER_")})
    app = ServeApp(settings, build_baseline("markov", settings.strategy))
    seen: dict[str, str] = {}

    def source() -> None:
        if app.metrics_port is not None and not seen and app.stats.commands:
            base = f"http://127.0.0.1:{app.metrics_port}"
            seen["metrics"] = urllib.request.urlopen(base + "/metrics").read().decode()
            seen["healthz"] = urllib.request.urlopen(base + "/healthz").read().decode()
        return None

    app._source = source  # the strategy_source hook runs between micro-batches
    app.run(idle_timeout_s=2.0)
    assert seen["healthz"] == "ok\n"
    assert "stream_warmer_events_total" in seen["metrics"]
    info = 'stream_warmer_model_version_info{strategy="markov",version="baseline"} 1.0'
    assert info in seen["metrics"]
