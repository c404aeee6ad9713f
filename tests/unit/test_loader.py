"""The loader loop with fakes: order, fairness, presence, expiry, retries, bounds, outages."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from stream_warmer.load import Cache, Loader, LoaderMetrics, RedisCache
from stream_warmer.load.metrics import COUNTERS, LoaderStats
from stream_warmer.settings import LoaderSettings
from tests.unit.loader_fakes import (
    Clock,
    FakeCache,
    FakeQueueRedis,
    InlineExecutor,
    RecordingOrigin,
)

WALL_MS = 1_700_000_000_000


def make(redis: FakeQueueRedis, cache: Cache, origin: Any,
         clock: Callable[[], float] | None = None,
         executor: Any = None, **settings: Any) -> Loader:
    conf = LoaderSettings(**settings)
    return Loader(redis, conf, "sw", cache, origin, metrics=LoaderMetrics(),
                  clock=clock or Clock(), wall_ms=lambda: WALL_MS, rng=random.Random(7),
                  executor=executor or InlineExecutor())


def settle(loader: Loader, steps: int = 20, clock: Clock | None = None) -> None:
    """Run rounds; with ``clock``, 10 ms pass between them (rate-limit tokens refill)."""
    for _ in range(steps):
        loader.step()
        if clock is not None:
            clock.advance(0.01)


def metric(loader: Loader, name: str, labels: dict[str, str] | None = None) -> float:
    value = loader.metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


def test_stats_fields_are_the_counters() -> None:
    assert list(LoaderStats().summary()) == list(COUNTERS)


def test_drains_highest_score_first_and_writes_the_cache() -> None:
    redis, cache, origin, clock = FakeQueueRedis(), FakeCache(), RecordingOrigin(), Clock()
    for i, score in enumerate([0.2, 0.9, 0.5, 0.7, 0.1]):
        redis.push("acme", f"k{i}", score)
    loader = make(redis, cache, origin, clock, concurrency=1, batch_per_tenant=8)
    settle(loader, 10, clock)
    assert [k for _t, k in origin.calls] == ["k1", "k3", "k2", "k0", "k4"]
    assert cache.data[("acme", "k1")] == b"v:k1"
    assert loader.stats.popped == loader.stats.loaded == 5
    assert metric(loader, "stream_warmer_loader_loaded_total") == 5
    assert metric(loader, "stream_warmer_loader_pop_to_cache_seconds_count") == 5
    assert redis.queued("acme") == {}
    assert "acme" not in redis.sets["sw:queues"]


def test_skips_keys_the_cache_holds_with_one_presence_check_per_batch() -> None:
    redis, cache, origin = FakeQueueRedis(), FakeCache(), RecordingOrigin()
    for i in range(6):
        redis.push("acme", f"k{i}", i / 10)
    cache.data[("acme", "k5")] = b"old"
    cache.data[("acme", "k2")] = b"old"
    loader = make(redis, cache, origin, concurrency=8)
    assert loader.step() == 6
    assert cache.present_calls == [6]
    assert sorted(k for _t, k in origin.calls) == ["k0", "k1", "k3", "k4"]
    assert cache.data[("acme", "k5")] == b"old"
    assert loader.stats.skipped_present == 2


def test_drops_expired_entries_and_keeps_those_without_expiry() -> None:
    redis, cache, origin = FakeQueueRedis(), FakeCache(), RecordingOrigin()
    redis.push("acme", "stale", 0.9, expires_at=WALL_MS - 1)
    redis.push("acme", "now", 0.8, expires_at=WALL_MS)
    redis.push("acme", "fresh", 0.7, expires_at=WALL_MS + 1)
    redis.push("acme", "never", 0.6, expires_at=0)
    loader = make(redis, cache, origin)
    settle(loader, 3)
    assert sorted(k for _t, k in origin.calls) == ["fresh", "never"]
    assert loader.stats.dropped_expired == 2
    assert metric(loader, "stream_warmer_loader_dropped_expired_total") == 2


def test_missing_keys_are_counted_and_not_retried() -> None:
    redis, cache, origin = FakeQueueRedis(), FakeCache(), RecordingOrigin(missing={"gone"})
    redis.push("acme", "gone", 0.5)
    clock = Clock()
    loader = make(redis, cache, origin, clock)
    settle(loader, 2)
    clock.advance(60)
    settle(loader, 2)
    assert origin.calls == [("acme", "gone")]
    assert loader.stats.origin_missing == 1
    assert cache.data == {}


def test_failing_origin_is_retried_with_backoff_then_dropped() -> None:
    redis, cache = FakeQueueRedis(), FakeCache()
    origin = RecordingOrigin(fail={"bad": 99, "flaky": 1})
    redis.push("acme", "bad", 0.9)
    redis.push("acme", "flaky", 0.8)
    redis.push("acme", "ok", 0.1)
    clock = Clock()
    loader = make(redis, cache, origin, clock, max_attempts=3, retry_backoff_s=0.1,
                  retry_backoff_max_s=0.15)
    settle(loader, 3)
    assert loader.stats.origin_errors == 2 and loader.stats.loaded == 1  # "ok" is not blocked
    clock.advance(0.049)  # jitter keeps at least half the backoff
    settle(loader, 2)
    assert len(origin.calls) == 3
    clock.advance(0.052)  # past the first backoff (0.1)
    settle(loader, 2)
    assert origin.calls.count(("acme", "bad")) == 2
    assert cache.data[("acme", "flaky")] == b"v:flaky"
    clock.advance(0.15)  # the second backoff is capped at 0.15
    settle(loader, 2)
    assert origin.calls.count(("acme", "bad")) == 3
    clock.advance(10)
    settle(loader, 2)
    assert origin.calls.count(("acme", "bad")) == 3
    s = loader.stats
    assert (s.origin_errors, s.failed, s.loaded, loader.held()) == (4, 1, 2, 0)
    assert metric(loader, "stream_warmer_loader_failed_total") == 1
    assert metric(loader, "stream_warmer_loader_origin_errors_total") == 4


def test_round_robin_across_tenants() -> None:
    redis, cache, origin, clock = FakeQueueRedis(), FakeCache(), RecordingOrigin(), Clock()
    for tenant in ("a", "b", "c"):
        for i in range(10):
            redis.push(tenant, f"{tenant}{i}", i / 10)
    loader = make(redis, cache, origin, clock, concurrency=4, batch_per_tenant=8)
    settle(loader, 3, clock)  # 4 per round: 2 + 2, starting after the last tenant served
    served = [t for t, _k in origin.calls]
    assert {t: served.count(t) for t in "abc"} == {"a": 4, "b": 4, "c": 4}
    settle(loader, 20, clock)
    assert loader.stats.loaded == 30


def test_pops_only_what_free_fetch_threads_can_take() -> None:
    from concurrent.futures import ThreadPoolExecutor

    redis, cache, gate = FakeQueueRedis(), FakeCache(), threading.Event()
    origin = RecordingOrigin(gate=gate)
    for i in range(20):
        redis.push("acme", f"k{i:02d}", i / 100)
    with ThreadPoolExecutor(3) as pool:
        loader = make(redis, cache, origin, time.monotonic, executor=pool, concurrency=3,
                      batch_per_tenant=8)
        assert loader.step() == 3
        for _ in range(5):
            assert loader.step() == 0
        assert len(redis.queued("acme")) == 17
        assert metric(loader, "stream_warmer_loader_in_flight") == 3
        gate.set()
        deadline = time.monotonic() + 5
        while loader.stats.loaded < 20 and time.monotonic() < deadline:
            loader.step()
            time.sleep(0.001)
    assert loader.stats.loaded == 20
    assert origin.max_active <= 3


def test_rate_limit_spends_one_token_per_origin_fetch() -> None:
    redis, cache, origin, clock = FakeQueueRedis(), FakeCache(), RecordingOrigin(), Clock()
    for i in range(20):
        redis.push("acme", f"k{i:02d}", i / 100)
    loader = make(redis, cache, origin, clock, concurrency=50, rate_per_s=5)
    settle(loader, 5)
    assert len(origin.calls) == 5  # the burst: min(rate, concurrency) tokens
    clock.advance(0.2)  # one token
    settle(loader, 5)
    assert len(origin.calls) == 6
    clock.advance(1.0)
    settle(loader, 5)
    assert len(origin.calls) == 11


def test_queue_outage_pauses_with_backoff_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    redis, cache, origin, clock = FakeQueueRedis(), FakeCache(), RecordingOrigin(), Clock()
    redis.push("acme", "k", 0.5)
    loader = make(redis, cache, origin, clock)
    redis.down = True
    with caplog.at_level(logging.INFO, logger="stream_warmer.load"):
        for _ in range(5):
            assert loader.step() == 0
            clock.advance(0.2)  # past each backoff: 0.1, 0.2 ...
        tries = redis.calls.count("smembers")
        settle(loader, 5)  # backoff now 0.4+: no new tries without time passing
        assert redis.calls.count("smembers") == tries
        assert not loader.healthy()
        assert metric(loader, "stream_warmer_loader_redis_up", {"redis": "queue"}) == 0
        redis.down = False
        clock.advance(10)
        settle(loader, 2)
    assert loader.healthy() and loader.stats.loaded == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("redis unavailable: loader paused") == 1
    assert messages.count("redis back: loader resumed") == 1


def test_cache_outage_at_presence_holds_entries_until_it_answers() -> None:
    redis, cache, origin, clock = FakeQueueRedis(), FakeCache(), RecordingOrigin(), Clock()
    for i in range(3):
        redis.push("acme", f"k{i}", i / 10)
    loader = make(redis, cache, origin, clock, concurrency=2)
    cache.down = True
    assert loader.step() == 2
    settle(loader, 3)
    assert loader.held() == 2 and origin.calls == [] and not loader.healthy()
    assert len(redis.queued("acme")) == 1  # nothing more popped meanwhile
    cache.down = False
    clock.advance(1)
    settle(loader, 5, clock)
    assert loader.stats.loaded == 3 and loader.healthy()


def test_cache_outage_at_write_keeps_the_value_without_refetching() -> None:
    redis, origin, clock = FakeQueueRedis(), RecordingOrigin(), Clock()

    class WriteFails(FakeCache):
        def put(self, entry: Any, value: bytes) -> None:
            if self.down:
                from stream_warmer.load import UnavailableError
                raise UnavailableError("no writes")
            super().put(entry, value)

        def present(self, entries: Any) -> list[bool]:
            down, self.down = self.down, False
            try:
                return super().present(entries)
            finally:
                self.down = down

    cache = WriteFails()
    redis.push("acme", "k", 0.5)
    loader = make(redis, cache, origin, clock)
    cache.down = True
    settle(loader, 3)
    assert origin.calls == [("acme", "k")] and loader.held() == 1
    cache.down = False
    clock.advance(1)
    settle(loader, 3)
    assert origin.calls == [("acme", "k")]  # written from the kept value
    assert cache.data[("acme", "k")] == b"v:k" and loader.stats.loaded == 1


class CacheRedis:
    """The redis-py surface ``RedisCache`` uses; ``EXISTS`` / ``SET`` raise ``on_exists``
    / ``on_set`` when set (the error replies of a busy, full or read-only Redis)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.on_exists: Exception | None = None
        self.on_set: Exception | None = None

    def set(self, key: str, value: bytes, px: Any = None) -> None:
        if self.on_set is not None:
            raise self.on_set
        self.data[key] = value

    def pipeline(self, transaction: bool = True) -> Any:
        outer, keys = self, list[str]()

        class Pipe:
            def exists(self, key: str) -> None:
                keys.append(key)

            def execute(self) -> list[int]:
                if outer.on_exists is not None:
                    raise outer.on_exists
                return [int(k in outer.data) for k in keys]

        return Pipe()


@pytest.mark.parametrize("on_set", [
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    ReadOnlyError("You can't write against a read only replica."),
], ids=lambda e: type(e).__name__)
def test_a_busy_full_or_read_only_cache_pauses_the_loader_instead_of_ending_it(
        on_set: Exception) -> None:
    redis, origin, clock, client = FakeQueueRedis(), RecordingOrigin(), Clock(), CacheRedis()
    redis.push("acme", "k", 0.5)
    loader = make(redis, RedisCache(client, "c:{tenant}:{key}"), origin, clock)  # type: ignore[arg-type]
    client.on_exists = ResponseError("BUSY Redis is busy running a script.")
    settle(loader, 3)  # the presence check is refused: no crash, the entry is held
    assert loader.held() == 1 and origin.calls == [] and not loader.healthy()
    client.on_exists, client.on_set = None, on_set
    clock.advance(1)
    settle(loader, 3)  # fetched, the write refused: kept for a retry, not a cache error
    assert origin.calls == [("acme", "k")] and loader.held() == 1 and not loader.healthy()
    assert loader.stats.cache_errors == 0
    client.on_set = None
    clock.advance(20)
    settle(loader, 3)
    assert client.data == {"c:acme:k": b"v:k"} and origin.calls == [("acme", "k")]
    assert loader.stats.loaded == 1 and loader.healthy()


def test_reloads_the_script_when_redis_lost_it() -> None:
    redis, cache, origin = FakeQueueRedis(), FakeCache(), RecordingOrigin()
    loader = make(redis, cache, origin)
    redis.push("acme", "a", 0.5)
    loader.step()
    redis.scripts.clear()  # a restarted Redis
    redis.push("acme", "b", 0.5)
    settle(loader, 2)
    assert loader.stats.loaded == 2
    assert redis.calls.count("script_load") == 2


def test_idle_loader_blocks_on_the_wake_list() -> None:
    redis, cache, origin = FakeQueueRedis(), FakeCache(), RecordingOrigin()
    stop = threading.Event()
    waits: list[float] = []

    def hook(timeout: float) -> None:
        waits.append(timeout)
        if len(waits) == 1:
            redis.push("acme", "k", 0.5)  # work arrives while blocked
        elif len(waits) >= 4:
            stop.set()

    redis.blpop_hook = hook
    loader = make(redis, cache, origin, idle_wait_s=0.5)
    loader.run(stop)
    assert loader.stats.loaded == 1
    assert waits and all(0 < t <= 0.5 for t in waits)
    assert redis.calls.count("smembers") <= len(waits) + 2  # no spinning between waits


def test_run_stops_and_drains_in_flight_fetches() -> None:
    from concurrent.futures import ThreadPoolExecutor

    redis, cache, gate = FakeQueueRedis(), FakeCache(), threading.Event()
    origin = RecordingOrigin(gate=gate, fail={"bad": 99})
    redis.push("acme", "bad", 0.9)
    for i in range(10):
        redis.push("acme", f"k{i}", i / 100)
    stop = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        loader = make(redis, cache, origin, time.monotonic, executor=pool, concurrency=4,
                      idle_wait_s=0.01)
        thread = threading.Thread(target=loader.run, args=(stop,))
        thread.start()
        deadline = time.monotonic() + 5
        while len(origin.calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
        stop.set()
        gate.set()
        thread.join(5)
    assert not thread.is_alive()
    s = loader.stats
    assert s.popped == 4 and s.loaded == 3 and s.abandoned == 1  # "bad" is not retried
    assert len(redis.queued("acme")) == 7 and loader.held() == 0


def test_bounded_run_ends_after_max_entries_or_idle_timeout() -> None:
    redis, cache, origin = FakeQueueRedis(), FakeCache(), RecordingOrigin()
    for i in range(5):
        redis.push("acme", f"k{i}", i / 10)
    loader = make(redis, cache, origin, time.monotonic, concurrency=2)
    assert loader.run(threading.Event(), max_entries=3).popped == 3
    clock = Clock()
    redis.blpop_hook = clock.advance
    idle = make(redis, cache, origin, clock, idle_wait_s=0.1)
    assert idle.run(threading.Event(), idle_timeout_s=0.5).loaded == 2
