"""Fakes for the loader unit tests: the queue Redis (the POP script's effect in Python),
a cache, an inline executor and a clock. The real scripts run in the integration tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

import redis
from redis.exceptions import NoScriptError

from stream_warmer.load import UnavailableError
from stream_warmer.warmqueue import POP, QueueEntry, expiry_key, queue_key, tenants_key, wake_key


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeQueueRedis:
    """The commands the loader sends to the queue Redis; ``down`` makes each one fail."""

    def __init__(self, prefix: str = "sw") -> None:
        self.prefix = prefix
        self.zsets: dict[str, dict[str, float]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.scripts: dict[str, str] = {}
        self.down = False
        self.calls: list[str] = []
        self.blpop_hook: Callable[[float], None] | None = None

    # --- test helpers
    def push(self, tenant: str, key: str, score: float, expires_at: int = 0) -> None:
        """What ENQUEUE does for one command (no marker)."""
        p = self.prefix
        self.zsets.setdefault(queue_key(p, tenant), {})[key] = score
        self.hashes.setdefault(expiry_key(p, tenant), {})[key] = str(expires_at)
        self.sets.setdefault(tenants_key(p), set()).add(tenant)
        self.lists.setdefault(wake_key(p), []).insert(0, b"1")

    def queued(self, tenant: str) -> dict[str, float]:
        return dict(self.zsets.get(queue_key(self.prefix, tenant), {}))

    # --- redis-py surface
    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise redis.ConnectionError("fake redis is down")

    def smembers(self, key: str) -> set[bytes]:
        self._check("smembers")
        return {m.encode() for m in self.sets.get(key, set())}

    def script_load(self, script: str) -> str:
        self._check("script_load")
        assert script == POP
        self.scripts["sha-pop"] = script
        return "sha-pop"

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> list[bytes]:
        if sha not in self.scripts:
            raise NoScriptError("NOSCRIPT No matching script")
        queue, expires, tenants = args[:numkeys]
        count, tenant = int(args[numkeys]), str(args[numkeys + 1])
        zset = self.zsets.get(queue, {})
        top = sorted(zset.items(), key=lambda kv: (-kv[1], kv[0]))[:count]
        out: list[bytes] = []
        hashes = self.hashes.get(expires, {})
        for key, score in top:
            del zset[key]
            out += [key.encode(), repr(score).encode(), hashes.pop(key, "0").encode()]
        if not zset:
            self.sets.get(tenants, set()).discard(tenant)
            self.hashes.pop(expires, None)
        return out

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def blpop(self, keys: list[str], timeout: float = 0) -> tuple[bytes, bytes] | None:
        self._check("blpop")
        assert timeout > 0
        if self.blpop_hook is not None:
            self.blpop_hook(timeout)
        for key in keys:
            items = self.lists.get(key)
            if items:
                return key.encode(), items.pop(0)
        return None


class FakePipeline:
    def __init__(self, client: FakeQueueRedis) -> None:
        self._client = client
        self._ops: list[tuple[str, tuple[Any, ...]]] = []

    def evalsha(self, *args: Any) -> FakePipeline:
        self._ops.append(("evalsha", args))
        return self

    def execute(self) -> list[Any]:
        self._client._check("pipeline")
        return [getattr(self._client, name)(*args) for name, args in self._ops]


class FakeCache:
    """A dict behind the Cache protocol (thread-safe); ``down`` raises UnavailableError."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.down = False
        self.present_calls: list[int] = []
        self.puts: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def present(self, entries: Sequence[QueueEntry]) -> list[bool]:
        if self.down:
            raise UnavailableError("fake cache down")
        self.present_calls.append(len(entries))
        with self._lock:
            return [(e.tenant, e.key) in self.data for e in entries]

    def put(self, entry: QueueEntry, value: bytes) -> None:
        if self.down:
            raise UnavailableError("fake cache down")
        with self._lock:
            self.data[entry.tenant, entry.key] = value
            self.puts.append((entry.tenant, entry.key))


class InlineExecutor(Executor):
    """Runs each submitted call at once, on the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class RecordingOrigin:
    """Returns ``b"v:" + key``; keys in ``fail`` raise (all or the first n calls), keys in
    ``missing`` return None; every call is recorded (thread-safe)."""

    def __init__(self, fail: dict[str, int] | None = None, missing: set[str] | None = None,
                 gate: threading.Event | None = None) -> None:
        self.fail = dict(fail or {})
        self.missing = missing or set()
        self.gate = gate
        self.calls: list[tuple[str, str]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, tenant: str, key: str) -> bytes | None:
        with self._lock:
            self.calls.append((tenant, key))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            left = self.fail.get(key, 0)
            if left:
                self.fail[key] = left - 1
        try:
            if self.gate is not None:
                assert self.gate.wait(10), "test gate never opened"
            if left:
                raise RuntimeError(f"origin down for {key}")
            return None if key in self.missing else b"v:" + key.encode()
        finally:
            with self._lock:
                self.active -= 1
