"""Redis faults other than a lost connection, and the queue layout's real scripts.

- a re-handled cause: ``ENQUEUE`` queues its command again and the sink reports it
  written (so it is produced again: at-least-once), while another cause within the
  marker's TTL stays suppressed;
- queue keys expire with their entries, and a loader's ``POP`` of an expired queue
  takes the tenant out of the tenants set;
- a failover (READONLY), a full Redis (OOM) and a busy script (BUSY) are an outage
  for serve's sink and the loader's queue and cache, not a crash; a wrong-type key
  still raises;
- a serve run through a failover pauses, resumes and loses no event, no command.

Uses its OWN redis-server on a free port (``CONFIG SET``, ``REPLICAOF`` and a busy
script would disturb the shared one); without ``redis-server`` it skips locally and
fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import msgspec
import pytest
import redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError

from stream_warmer.errors import SinkUnavailableError
from stream_warmer.events import WarmCommand
from stream_warmer.load.cache import RedisCache
from stream_warmer.load.outage import UnavailableError
from stream_warmer.load.queue import WarmQueue
from stream_warmer.serve.app import ServeApp
from stream_warmer.serve.sinks import RedisSink, redis_client
from stream_warmer.settings import RedisSettings
from stream_warmer.strategies import build_baseline
from stream_warmer.warmqueue import QUEUE_GRACE_MS, QueueEntry, expiry_key, marker_key, queue_key
from tests.integration.serve_helpers import (
    OwnRedis,
    committed,
    delete_group,
    event_bytes,
    free_port,
    high_watermarks,
    now_ms,
    produce,
    read_all,
    serve_env,
    settings_from,
)
from tests.reliability.conftest import Report, reliability  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration
PREFIX = "sw"


@pytest.fixture
def admin(own_redis: OwnRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(port=own_redis.port, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def sink(own_redis: OwnRedis) -> Iterator[RedisSink]:
    settings = RedisSettings(url=own_redis.url, key_prefix=PREFIX, socket_timeout_s=1.0)
    client = redis_client(settings)
    yield RedisSink(client, settings, dedup_ttl_ms=30_000)
    client.close()


@pytest.fixture
def queue(own_redis: OwnRedis) -> Iterator[WarmQueue]:
    client = redis_client(RedisSettings(url=own_redis.url, socket_timeout_s=1.0))
    yield WarmQueue(client, PREFIX, max_block_s=0.1)
    client.close()


@pytest.fixture
def cache(own_redis: OwnRedis) -> Iterator[RedisCache]:
    client = redis_client(RedisSettings(url=own_redis.url, socket_timeout_s=1.0))
    yield RedisCache(client, "cache:{tenant}:{key}")
    client.close()


CACHED = QueueEntry("acme", "c1", 0.5, 0)


def command(key: str, source: str, life_ms: int = 10_000, tenant: str = "acme") -> WarmCommand:
    issued = now_ms()
    return WarmCommand(tenant, key, 0.5, "m", "v", source, issued, issued + life_ms)


def flush(sink: RedisSink, *commands: WarmCommand) -> list[str]:
    sink.write(commands)
    return [c.source for c in sink.flush()]


# ---------------------------------------------------------------------- at-least-once
def test_a_re_handled_cause_is_queued_and_reported_again_another_cause_is_not(
        sink: RedisSink, admin: redis.Redis) -> None:
    assert flush(sink, command("k1", "events/0/9")) == ["events/0/9"]
    admin.zpopmax(queue_key(PREFIX, "acme"))  # a loader took it
    # the process died before the command reached warm-commands: the event is read again
    assert flush(sink, command("k1", "events/0/9")) == ["events/0/9"]
    assert sink.requeued == 1
    assert admin.zscore(queue_key(PREFIX, "acme"), "k1") == 0.5
    # later causes within the marker's TTL (10 after 9: offsets compare as numbers),
    # or causes in another partition or topic, are a burst: suppressed
    assert flush(sink, command("k1", "events/0/10"), command("k1", "events/1/3"),
                 command("k1", "other/0/9")) == []
    assert flush(sink, command("k1", "events/0/2")) == ["events/0/2"]  # rewound further
    marker = admin.get(marker_key(PREFIX, "acme", "k1"))
    assert marker is not None and msgspec.json.decode(marker)["source"] == "events/0/2"
    assert 0 < admin.pttl(marker_key(PREFIX, "acme", "k1")) <= 30_000
    assert sink.requeued == 2


# ---------------------------------------------------------------------- expiry
def test_queue_keys_expire_with_their_entries_and_loaders_drop_expired_tenants(
        sink: RedisSink, admin: redis.Redis, queue: WarmQueue) -> None:
    keys = (queue_key(PREFIX, "acme"), expiry_key(PREFIX, "acme"))
    flush(sink, command("k1", "events/0/1", life_ms=60_000))
    assert all(60_000 < admin.pttl(k) <= 60_000 + QUEUE_GRACE_MS for k in keys)
    flush(sink, command("k2", "events/0/2", life_ms=2_000))  # shorter: never shortens
    assert all(admin.pttl(k) > 50_000 for k in keys)
    flush(sink, command("k1", "events/0/3", life_ms=60_000, tenant="idle"))
    idle_keys = (queue_key(PREFIX, "idle"), expiry_key(PREFIX, "idle"))
    for key in idle_keys:
        admin.pexpire(key, 1)  # what its TTL does to an idle tenant, sooner
    deadline = time.monotonic() + 5
    while admin.exists(*idle_keys) and time.monotonic() < deadline:  # each expires on its own
        time.sleep(0.01)
    assert not admin.exists(*idle_keys)
    assert queue.tenants() == ["acme", "idle"]
    popped = queue.pop([("acme", 5), ("idle", 5)])
    assert sorted((e.tenant, e.key) for e in popped) == [("acme", "k1"), ("acme", "k2")]
    assert queue.tenants() == []  # both drained or gone: the set keeps no tenant


# ---------------------------------------------------------------------- faults
def _is_outage(sink: RedisSink, cause: type[Exception] | None = None) -> None:
    sink.write([command("k9", "events/0/99")])
    with pytest.raises(SinkUnavailableError) as info:
        sink.flush()
    if cause is not None:
        assert isinstance(info.value.__cause__, cause)
    assert [c.key for c in sink.discard()] == ["k9"]
    assert sink.ping() is False  # the probe is a write: no resume while writes fail


def _recovered(sink: RedisSink, queue: WarmQueue, cache: RedisCache) -> None:
    assert sink.ping() is True
    assert flush(sink, command("k8", "events/0/100")) == ["events/0/100"]
    assert "k8" in [e.key for e in queue.pop([("acme", 10)])]
    cache.put(CACHED, b"v")
    assert cache.present([CACHED]) == [True]


def test_a_failover_to_a_replica_is_an_outage_for_serve_and_loader(
        sink: RedisSink, admin: redis.Redis, queue: WarmQueue, cache: RedisCache) -> None:
    flush(sink, command("k1", "events/0/1"))
    admin.replicaof("127.0.0.1", free_port())  # a master that never answers: READONLY
    try:
        _is_outage(sink, ReadOnlyError)
        assert queue.tenants() == ["acme"]  # reads still work
        with pytest.raises(UnavailableError, match="POP"):
            queue.pop([("acme", 1)])  # POP writes
        assert cache.present([CACHED]) == [False]
        with pytest.raises(UnavailableError, match="SET"):
            cache.put(CACHED, b"v")
    finally:
        admin.replicaof("NO", "ONE")
    _recovered(sink, queue, cache)


def test_a_full_redis_is_an_outage_and_loaders_still_drain_it(
        sink: RedisSink, admin: redis.Redis, queue: WarmQueue, cache: RedisCache) -> None:
    flush(sink, command("k1", "events/0/1"))
    admin.config_set("maxmemory", "1")  # noeviction: every write that may grow is refused
    try:
        _is_outage(sink, OutOfMemoryError)
        assert [e.key for e in queue.pop([("acme", 1)])] == ["k1"]  # POP frees memory
        with pytest.raises(UnavailableError, match="SET"):
            cache.put(CACHED, b"v")  # a full cache: the loader keeps the value
    finally:
        admin.config_set("maxmemory", "0")
    _recovered(sink, queue, cache)


def test_a_busy_script_is_an_outage_for_serve_and_loader(
        sink: RedisSink, admin: redis.Redis, queue: WarmQueue, cache: RedisCache,
        own_redis: OwnRedis) -> None:
    admin.config_set("lua-time-limit", "50")  # busy-reply-threshold in Redis 7
    blocker = redis.Redis(port=own_redis.port, socket_timeout=30)
    stuck = threading.Thread(target=_run_forever, args=(blocker,))
    stuck.start()
    try:
        _wait_busy(admin)
        _is_outage(sink)
        with pytest.raises(UnavailableError, match="SMEMBERS"):
            queue.tenants()
        with pytest.raises(UnavailableError, match="POP"):
            queue.pop([("acme", 1)])
        with pytest.raises(UnavailableError, match="EXISTS"):
            cache.present([CACHED])
        with pytest.raises(UnavailableError, match="SET"):
            cache.put(CACHED, b"v")
    finally:
        admin.script_kill()
        stuck.join(10)
        blocker.close()
    _recovered(sink, queue, cache)


def _run_forever(client: redis.Redis) -> None:
    with contextlib.suppress(redis.ResponseError):  # killed by SCRIPT KILL
        client.eval("while true do end", 0)


def _wait_busy(admin: redis.Redis) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            admin.ping()
        except redis.ResponseError as exc:
            assert str(exc).startswith("BUSY")
            return
        time.sleep(0.02)
    pytest.fail("the script never made Redis busy")


def test_a_key_of_the_wrong_type_is_a_bug_and_raises(
        sink: RedisSink, admin: redis.Redis) -> None:
    admin.set(queue_key(PREFIX, "acme"), "not a sorted set")
    sink.write([command("k1", "events/0/1")])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sink.flush()


# ---------------------------------------------------------------------- serve through a failover
@pytest.mark.reliability
def test_serve_pauses_through_a_failover_and_loses_nothing(
    kafka_bootstrap: str, own_redis: OwnRedis, admin: redis.Redis,
    topic_factory: Callable[..., str], unique: Callable[[str], str],
    reliability: Report,  # noqa: F811  (the fixture imported from tests/reliability)
) -> None:
    topics = {"events": topic_factory("events", 2), "warm": topic_factory("warm", 1),
              "dlq": topic_factory("dlq", 1)}
    group = unique("serve")
    env = serve_env(kafka_bootstrap, own_redis.url, group, topics, PREFIX,
                    STRATEGY__NAME="nextkey", POLICY__STALE_AFTER_MS="600000",
                    BATCH__POLL_BATCH="100")
    settings = settings_from(env)
    app = ServeApp(settings, build_baseline("nextkey", settings.strategy))
    runner = threading.Thread(target=app.run, kwargs={"idle_timeout_s": 4.0})
    runner.start()
    total = 2000
    try:
        for start in range(0, total, 200):
            produce(kafka_bootstrap, topics["events"],
                    [(f"t{i}", event_bytes(f"t{i}", str(i))) for i in range(start, start + 200)])
            if start == 600:
                admin.replicaof("127.0.0.1", free_port())
            if start == 1400:
                assert app.metrics.paused._value.get() == 1  # paused, not crashed
                admin.replicaof("NO", "ONE")
            time.sleep(0.1)
        runner.join(60)
        assert not runner.is_alive()
    finally:
        admin.replicaof("NO", "ONE")
        app.stop()
        runner.join(10)

    assert app.stats.rehandled > 0
    pipe = admin.pipeline(transaction=False)
    for i in range(total):
        pipe.zscore(f"{PREFIX}:t{i}:queue", str(i + 1))
    not_queued = [i for i, score in enumerate(pipe.execute()) if score is None]
    assert not_queued == []
    produced = {(r[1]["tenant"], r[1]["key"]) for r in read_all(kafka_bootstrap, topics["warm"],
                                                                total)}
    not_produced = {(f"t{i}", str(i + 1)) for i in range(total)} - produced
    assert not_produced == set()
    ends = high_watermarks(kafka_bootstrap, topics["events"], 2)
    done = committed(kafka_bootstrap, group, topics["events"], 2)
    assert done == ends
    delete_group(kafka_bootstrap, group)
    unprocessed = sum(end - max(done[p], 0) for p, end in ends.items())
    reliability(load=f"{total:,} events in batches of 200 every 0.1 s, 2 partitions, "
                     "real serve (nextkey, in-process)",
                faults=f"Redis failover to a replica (READONLY) mid-run and back; serve "
                       f"paused and resumed, {app.stats.rehandled:,} events re-handled "
                       "(OOM and BUSY: sink- and loader-level tests in the same file)",
                lost=unprocessed + len(set(not_queued) | {int(t[1:]) for t, _k in not_produced}))
