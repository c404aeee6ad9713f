"""``stream-warmer load`` subprocesses on the real Redis: order, presence, retries, expiry,
wake-up latency, two replicas, SIGTERM. Queues are written with serve's real writer
(``RedisSink``, so the real ENQUEUE script and layout); the origin is
``tests.integration.loader_origin``."""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_warmer.events import WarmCommand
from stream_warmer.localstack import free_port
from stream_warmer.serve.sinks import RedisSink
from stream_warmer.settings import RedisSettings
from stream_warmer.warmqueue import queue_key, tenants_key

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ORIGIN = "tests.integration.loader_origin:fetch"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)


@dataclass
class LoaderProc:
    proc: subprocess.Popen[bytes]
    port: int
    output: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(self.url("/healthz"), timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url("/metrics"), timeout=2) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("stream_warmer_loader_"):
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("stream_warmer_loader_")] = float(value)
        return out

    def stop(self, timeout_s: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)


@dataclass
class Stack:
    """One test's prefix, cache key format, clients and loader processes."""

    redis_url: str
    prefix: str
    tmp: Path
    client: redis.Redis
    procs: list[LoaderProc] = field(default_factory=list)

    @property
    def origin_log(self) -> Path:
        return self.tmp / "origin.jsonl"

    def cache_key(self, tenant: str, key: str) -> str:
        return f"{self.prefix}-cache:{tenant}:{key}"

    def enqueue(self, *commands: tuple[str, str, float] | tuple[str, str, float, int]) -> None:
        """(tenant, key, score[, expires_at]) through serve's writer."""
        sink = RedisSink(self.client, RedisSettings(url=self.redis_url, key_prefix=self.prefix),
                         dedup_ttl_ms=50)
        now = now_ms()
        sink.write([WarmCommand(c[0], c[1], c[2], "test", "v0", "t/0/0", now,
                                c[3] if len(c) > 3 else now + 60_000) for c in commands])
        assert len(sink.flush()) == len(commands)

    def start(self, cache_url: str | None = None, **loader: str) -> LoaderProc:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_WARMER_")}
        env |= {
            "PYTHONPATH": str(REPO),
            "STREAM_WARMER_REDIS__URL": self.redis_url,
            "STREAM_WARMER_REDIS__KEY_PREFIX": self.prefix,
            "STREAM_WARMER_REDIS__SOCKET_TIMEOUT_S": "2",
            "STREAM_WARMER_METRICS__PORT": str(port),
            "STREAM_WARMER_METRICS__HOST": "127.0.0.1",
            "STREAM_WARMER_LOADER__CACHE_URL": cache_url or self.redis_url,
            "STREAM_WARMER_LOADER__CACHE_KEY_FORMAT": f"{self.prefix}-cache:{{tenant}}:{{key}}",
            "STREAM_WARMER_LOADER__ORIGIN": ORIGIN,
            "LOADER_TEST_LOG": str(self.origin_log),
        }
        env |= {k if k.startswith("LOADER_TEST_") else f"STREAM_WARMER_LOADER__{k.upper()}": v
                for k, v in loader.items()}
        output = self.tmp / f"loader-{len(self.procs)}.log"
        with output.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "stream_warmer", "load"], env=env,
                                    cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        loader_proc = LoaderProc(proc, port, output)
        self.procs.append(loader_proc)
        wait_for(lambda: loader_proc.healthz() in {200, 503} or proc.poll() is not None, 30,
                 "the loader's /healthz", every_s=0.05)
        assert proc.poll() is None, output.read_text()
        return loader_proc

    def calls(self, event: str = "start") -> list[dict[str, Any]]:
        if not self.origin_log.exists():
            return []
        lines = self.origin_log.read_text().splitlines()
        return [row for row in map(json.loads, lines) if row["ev"] == event]

    def queued(self, tenant: str) -> int:
        return int(self.client.zcard(queue_key(self.prefix, tenant)))


@pytest.fixture
def stack(redis_url: str, unique: Callable[[str], str], tmp_path: Path) -> Iterator[Stack]:
    client = redis.Redis.from_url(redis_url)
    st = Stack(redis_url, unique("ld"), tmp_path, client)
    try:
        yield st
    finally:
        for p in st.procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)
        for p in st.procs:
            sys.stdout.write(f"--- {p.output.name}\n{p.output.read_text()}")
        keys = list(client.scan_iter(f"{st.prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def test_drains_highest_score_first_fairly_and_skips_cached_keys(stack: Stack) -> None:
    stack.enqueue(*[(t, f"k{i}", (i + 1) / 20) for t in ("acme", "beta") for i in range(10)])
    stack.client.set(stack.cache_key("acme", "k7"), b"old")
    loader = stack.start(CONCURRENCY="1", BATCH_PER_TENANT="2")
    assert loader.healthz() == 200
    wait_for(lambda: len(stack.calls("end")) == 19, 20, "19 origin fetches")
    m = wait_for(lambda: (m := loader.metrics())["loaded_total"] == 19 and m, 5, "19 loaded")

    calls = [(c["tenant"], c["key"]) for c in stack.calls()]
    for tenant in ("acme", "beta"):
        keys = [k for t, k in calls if t == tenant]
        expected = [f"k{i}" for i in range(9, -1, -1) if (tenant, f"k{i}") != ("acme", "k7")]
        assert keys == expected  # highest score first
    assert {t for t, _k in calls[:4]} == {"acme", "beta"}  # round robin, not one tenant first
    assert stack.client.get(stack.cache_key("acme", "k7")) == b"old"
    assert stack.client.get(stack.cache_key("beta", "k3")) == b"v:beta/k3"
    assert (m["popped_total"], m["skipped_present_total"]) == (20, 1)
    assert m["pop_to_cache_seconds_count"] == 19 and m["origin_fetch_seconds_count"] == 19
    assert stack.queued("acme") == stack.queued("beta") == 0
    assert stack.client.scard(tenants_key(stack.prefix)) == 0
    assert loader.stop() == 0


def test_failing_and_slow_origin_do_not_stop_the_loader(stack: Stack) -> None:
    stack.enqueue(("acme", "fail-1", 0.99), ("acme", "flaky-1", 0.98),
                  ("acme", "missing-1", 0.97),
                  *[("acme", f"slow-{i}", 0.9 - i / 100) for i in range(4)],
                  *[("acme", f"ok-{i}", 0.5 - i / 100) for i in range(6)])
    loader = stack.start(CONCURRENCY="2", MAX_ATTEMPTS="3", RETRY_BACKOFF_S="0.1",
                         RETRY_BACKOFF_MAX_S="0.15", LOADER_TEST_SLOW_S="0.3")
    peaks = {"in_flight": 0.0, "held_entries": 0.0}

    def done() -> bool:
        m = loader.metrics()
        for name, peak in peaks.items():
            peaks[name] = max(peak, m[name])
        return m["loaded_total"] == 11 and m["failed_total"] == 1

    wait_for(done, 20, "11 loaded and 1 failed")
    m = loader.metrics()
    assert m["origin_errors_total"] == 5  # fail-1 three times, flaky-1 twice
    assert m["origin_missing_total"] == 1 and loader.healthz() == 200
    assert peaks["in_flight"] <= 2 and peaks["held_entries"] <= 4
    assert max(c["active"] for c in stack.calls()) <= 2  # never more than `concurrency`
    starts = [c["t"] for c in stack.calls() if c["key"] == "fail-1"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3 and gaps[0] >= 0.05 and gaps[1] >= 0.075  # jittered backoff
    assert stack.client.get(stack.cache_key("acme", "flaky-1")) == b"v:acme/flaky-1"
    assert stack.client.get(stack.cache_key("acme", "fail-1")) is None
    assert stack.client.get(stack.cache_key("acme", "missing-1")) is None
    # the failing key's retries ran between the slow fetches, not after the queue drained
    slow_window = (min(c["t"] for c in stack.calls() if c["key"].startswith("slow-")),
                   max(c["t"] for c in stack.calls("end") if c["key"].startswith("slow-")))
    assert any(slow_window[0] < t < slow_window[1] for t in starts[1:])
    assert loader.stop() == 0


def test_stale_entries_are_dropped_unfetched(stack: Stack) -> None:
    past = now_ms() - 1_000
    stack.enqueue(*[("acme", f"old-{i}", 0.9, past) for i in range(5)],
                  *[("acme", f"new-{i}", 0.5) for i in range(3)])
    loader = stack.start()
    m = wait_for(lambda: (m := loader.metrics())["loaded_total"] == 3 and m, 20, "3 loaded")
    assert m["dropped_expired_total"] == 5
    assert sorted(c["key"] for c in stack.calls()) == ["new-0", "new-1", "new-2"]
    assert stack.client.get(stack.cache_key("acme", "old-0")) is None
    assert loader.stop() == 0


def test_an_idle_loader_picks_new_work_up_at_once(stack: Stack) -> None:
    # BLPOP waits up to 2 s: only the wake list can make a pick-up fast
    loader = stack.start(IDLE_WAIT_S="2")
    latencies = []
    for i in range(5):
        time.sleep(0.1)  # let it block again
        start = time.monotonic()
        stack.enqueue(("acme", f"k{i}", 0.5))
        wait_for(functools.partial(stack.client.exists, stack.cache_key("acme", f"k{i}")), 5,
                 "the warm in the cache", every_s=0.0005)
        latencies.append(time.monotonic() - start)
    assert sorted(latencies)[2] < 0.2, latencies
    wait_for(lambda: loader.metrics()["loaded_total"] == 5, 5, "5 loaded")
    assert loader.stop() == 0


def test_two_replicas_share_the_queues_and_fetch_each_key_once(stack: Stack) -> None:
    loaders = [stack.start(CONCURRENCY="2", LOADER_TEST_SLOW_S="0.02") for _ in range(2)]
    stack.enqueue(*[(f"t{i % 3}", f"slow-{i}", 0.5) for i in range(60)])
    wait_for(lambda: sum(p.metrics()["loaded_total"] for p in loaders) == 60, 20, "60 loaded")
    keys = [c["key"] for c in stack.calls()]
    assert len(keys) == len(set(keys)) == 60
    assert all(p.metrics()["popped_total"] > 0 for p in loaders)
    assert [p.stop() for p in loaders] == [0, 0]


def test_sigterm_finishes_fetches_in_flight_and_exits_0(stack: Stack) -> None:
    stack.enqueue(*[("acme", f"slow-{i:02d}", 0.9 - i / 100) for i in range(20)])
    loader = stack.start(CONCURRENCY="4", LOADER_TEST_SLOW_S="1.0")
    wait_for(lambda: len(stack.calls()) == 4, 10, "4 fetches in flight")
    assert stack.calls("end") == []
    assert loader.stop() == 0
    started = sorted(c["key"] for c in stack.calls())
    assert sorted(c["key"] for c in stack.calls("end")) == started == [
        f"slow-{i:02d}" for i in range(4)]
    for key in started:
        assert stack.client.get(stack.cache_key("acme", key)) == f"v:acme/{key}".encode()
    assert stack.queued("acme") == 16  # nothing popped beyond what was in flight
    assert "loader stopped" in loader.output.read_text()


def test_an_unreachable_cache_pauses_the_loader_without_losing_work(stack: Stack) -> None:
    stack.enqueue(*[("acme", f"k{i}", 0.5) for i in range(10)])
    loader = stack.start(cache_url=f"redis://127.0.0.1:{free_port()}/0", CONCURRENCY="2")
    wait_for(lambda: loader.healthz() == 503, 10, "/healthz to report the outage")
    time.sleep(0.5)  # several backoff rounds
    m = loader.metrics()
    assert loader.proc.poll() is None and m['redis_up{redis="cache"}'] == 0
    assert m["popped_total"] <= 2 and stack.queued("acme") >= 8  # held, not drained away
    assert stack.calls() == []
    assert loader.stop() == 0
    assert loader.output.read_text().count("redis unavailable: loader paused") == 1
