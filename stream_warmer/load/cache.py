"""The cache the loader fills, behind a small protocol (Redis here, an LRU in benchmarks).

Which Redis errors are an outage is the rule serve and the queue follow
(``redisfaults.unavailable``): besides a lost connection, a failover (READONLY), a
full cache (OOM) or a busy script (BUSY) pauses the loader and keeps its entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn, Protocol

import redis
from redis.exceptions import RedisError

from stream_warmer.errors import ConfigError
from stream_warmer.load.outage import UnavailableError
from stream_warmer.redisfaults import unavailable
from stream_warmer.warmqueue import QueueEntry

_FORMAT_VAR = "STREAM_WARMER_LOADER__CACHE_KEY_FORMAT (loader.cache_key_format)"


class Cache(Protocol):
    """What the loader needs of a cache.

    ``present`` runs on the loader's loop thread, once per popped batch; ``put`` runs
    on its fetch threads, concurrently, so it must be thread-safe. Either raises
    ``UnavailableError`` when the cache cannot serve it now (the loader pauses and
    keeps the entries). Anything else is a bug: raised by ``present`` it ends the
    loader; by ``put``, the entry is counted as a cache error and dropped.
    """

    def present(self, entries: Sequence[QueueEntry]) -> list[bool]:
        """One flag per entry: True when the cache already holds its key."""
        ...

    def put(self, entry: QueueEntry, value: bytes) -> None:
        """Store ``value`` under the entry's key."""
        ...


def check_key_format(key_format: str) -> str:
    """``key_format`` if it formats with ``tenant`` and ``key`` and depends on the key."""
    try:
        one = key_format.format(tenant="t", key="k1")
        two = key_format.format(tenant="t", key="k2")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        msg = (f"{_FORMAT_VAR}: {key_format!r} must be a format string using only "
               f"{{tenant}} and {{key}}: {exc!r}")
        raise ConfigError(msg) from exc
    if one == two:
        msg = f"{_FORMAT_VAR}: {key_format!r} does not use {{key}}: every key would collide"
        raise ConfigError(msg)
    return key_format


def _raise(command: str, exc: RedisError) -> NoReturn:
    """Raise ``UnavailableError`` for an outage, ``exc`` itself for a bug."""
    if not unavailable(exc):
        raise exc
    msg = f"cache redis unavailable ({command}): {exc}"
    raise UnavailableError(msg) from exc


class RedisCache:
    """A Redis used as the cache: ``EXISTS`` (pipelined per batch) and ``SET [PX ttl]``.

    The cache key of (tenant, key) is ``key_format.format(tenant=..., key=...)``; it
    must be the key the application reads. ``ttl_s = 0`` sets no TTL (the server's
    eviction policy, e.g. ``allkeys-lru``, decides).
    """

    def __init__(self, client: redis.Redis, key_format: str, ttl_s: float = 0.0) -> None:
        self._client = client
        self._format = check_key_format(key_format)
        self._px = max(1, round(ttl_s * 1000)) if ttl_s > 0 else None

    def key(self, entry: QueueEntry) -> str:
        """The cache key of one queue entry."""
        return self._format.format(tenant=entry.tenant, key=entry.key)

    def present(self, entries: Sequence[QueueEntry]) -> list[bool]:
        """One pipelined round trip of ``EXISTS``, one per entry."""
        if not entries:
            return []
        pipe = self._client.pipeline(transaction=False)
        for entry in entries:
            pipe.exists(self.key(entry))
        try:
            return [bool(n) for n in pipe.execute()]
        except RedisError as exc:
            _raise(f"EXISTS of {len(entries)} keys", exc)

    def put(self, entry: QueueEntry, value: bytes) -> None:
        """``SET key value [PX ttl]``."""
        try:
            self._client.set(self.key(entry), value, px=self._px)
        except RedisError as exc:
            _raise("SET", exc)
