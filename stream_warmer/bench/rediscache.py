"""``bench live --cache redis``: a real Redis run as a cache, and the application on it.

``cache_redis`` starts a ``redis-server`` for the run on a free loopback port, as a
cache is deployed: no persistence, ``maxmemory`` with ``allkeys-lru``. Its
``maxmemory`` is calibrated to hold about C objects of the loader's shape (the
cache is filled past its bound a few times and the bound moved until about C stay;
then it is flushed). Eviction frees memory in steps, so what a full cache holds
varies by a few objects around C (about ±15% at C = 50, less at larger C); the
unwarmed control cache below has the same size, and is the baseline of its row.
Redis's LRU is approximate (it samples ``maxmemory-samples`` keys per eviction, on a
clock of coarse resolution), so its hit ratio is close to, not equal to, the exact
LRU's.

``RedisAppCache`` is the application: ``GET``, and on a miss ``SET`` the value (an
application fills its cache on a miss). It counts its own hits on the counted half;
``control`` is a second cache of the same size that sees the same requests at the
same moments and nothing else: the no-warming hit ratio of this very Redis. The
server's ``keyspace_hits`` / ``keyspace_misses`` over the same half are kept
beside them (they include the loader's presence checks, which ``EXISTS`` counts as
lookups too).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from stream_warmer.events import AccessEvent

MAXMEMORY_SAMPLES = 10
CLIENT_SLACK_BYTES = 64 * 1024  # the first guess's room for the clients' buffers
CALIBRATION_ROUNDS = 3
# objects large beside Redis's per-key overhead and the clients' buffers, so that a
# memory bound is close to an object count
DEFAULT_PAYLOAD_BYTES = 4096


@contextlib.contextmanager
def cache_redis(port: int, capacity: int, events: Sequence[AccessEvent], key_format: str,
                *, payload_bytes: int, log_dir: Path) -> Iterator[redis.Redis]:
    """A fresh ``redis-server`` on ``port`` sized for about ``capacity`` objects."""
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "bench live --cache redis needs redis-server on PATH (scripts/bootstrap)"
        raise FileNotFoundError(msg)
    out = (log_dir / f"cache-redis-{port}.log").open("wb")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "allkeys-lru", "--maxmemory-samples", str(MAXMEMORY_SAMPLES)],
        stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        _wait_ping(client)
        _calibrate(client, capacity, events, key_format, payload_bytes)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        out.close()


def _wait_ping(client: redis.Redis, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _calibrate(client: redis.Redis, capacity: int, events: Sequence[AccessEvent],
               key_format: str, payload_bytes: int) -> None:
    """Set ``maxmemory`` so that a full cache holds about ``capacity`` such objects.

    A first guess from the memory ``capacity`` objects take; then, a few times: fill
    the cache well past its bound with keys of the trace's shape, count what stayed,
    and move the bound by the difference. The data is flushed at the end.
    """
    names = [key_format.format(tenant=e.tenant, key=e.key) for e in events[:10_000]]
    width = max((len(n) for n in names), default=8)
    payload = b"x" * payload_bytes
    base = _used(client)
    _fill(client, [f"calib:{i}".ljust(width, "_") for i in range(capacity)], payload)
    per_object = max(1.0, (_used(client) - base) / capacity)
    bound = base + per_object * capacity + CLIENT_SLACK_BYTES
    for round_no in range(CALIBRATION_ROUNDS):
        client.config_set("maxmemory", str(int(bound)))
        _fill(client, [f"calib:{round_no}:{i}".ljust(width, "_") for i in range(3 * capacity)],
              payload)
        bound += (capacity - int(client.dbsize())) * per_object
    client.config_set("maxmemory", str(int(bound)))
    client.flushall()
    client.config_resetstat()


def _fill(client: redis.Redis, names: Sequence[str], payload: bytes) -> None:
    pipe = client.pipeline(transaction=False)
    for i, name in enumerate(names, start=1):
        pipe.set(name, payload)
        if i % 500 == 0:
            pipe.execute()
    pipe.execute()


def _used(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


class RedisAppCache:
    """The application's reads and fills, against the cache Redis."""

    def __init__(self, client: redis.Redis, key_format: str, payload_bytes: int,
                 half: int, *, control: RedisAppCache | None = None,
                 on_half: Callable[[], None] = lambda: None) -> None:
        self._client = client
        self._format = key_format
        self._payload = b"x" * payload_bytes
        self._half = half
        self._on_half = on_half
        self._control = control
        self.requests = 0
        self.hits = 0
        self._stats_at_half: dict[str, int] | None = None
        self.server: dict[str, int] = {}

    def request(self, tenant: str, key: str, index: int) -> None:
        """Request ``index``: GET, and SET on a miss."""
        if index == self._half:
            self._stats_at_half = self._stats()
            self._on_half()
        name = self._format.format(tenant=tenant, key=key)
        hit = self._client.get(name) is not None
        if not hit:
            self._client.set(name, self._payload)
        if index >= self._half:
            self.requests += 1
            self.hits += hit
        if self._control is not None:
            self._control.request(tenant, key, index)

    def finish(self) -> None:
        """Keep the server's counters over the counted half."""
        end, start = self._stats(), self._stats_at_half or {}
        self.server = {k: end[k] - start.get(k, 0) for k in end}

    def hit_ratio(self) -> float:
        """The application's own hits / counted requests."""
        return self.hits / self.requests if self.requests else float("nan")

    def _stats(self) -> dict[str, int]:
        info: dict[str, Any] = self._client.info("stats")
        return {k: int(info[k]) for k in ("keyspace_hits", "keyspace_misses", "evicted_keys")}
