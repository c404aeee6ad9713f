"""Where warm commands go: a per-tenant Redis priority queue, and the ``warm-commands`` topic.

The Redis layout and its scripts are ``stream_warmer.warmqueue`` (shared with the
loaders). All tenants of a flush go in ONE pipelined round trip. Only commands that
Redis queued go on to the Kafka topic (keyed by tenant): new ones, and those of a
re-handled cause queued again (so a command whose delivery was lost in a crash is
produced when its event is read again: at-least-once). Replies that mean "not now"
(``redisfaults.unavailable``: a failover, OOM, a busy script, loading) are an outage
like a lost connection; any other error reply raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from stream_warmer.errors import SinkUnavailableError
from stream_warmer.events import WarmCommand, encode, valid_tenant
from stream_warmer.redisfaults import unavailable
from stream_warmer.settings import RedisSettings
from stream_warmer.warmqueue import (
    ENQUEUE,
    PROBE,
    REQUEUED,
    SUPPRESSED,
    expiry_key,
    marker_key,
    probe_key,
    queue_key,
    queue_life_ms,
    tenants_key,
    wake_key,
)

PROBE_TTL_MS = 1000


def redis_client(settings: RedisSettings) -> redis.Redis:
    """A client without its own retries: the serve loop backs off and retries itself."""
    password = settings.password.get_secret_value() if settings.password else None
    return redis.Redis.from_url(
        settings.url,
        password=password,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class RedisSink:
    """Buffers warm commands; ``flush`` writes them in one pipelined round trip."""

    def __init__(
        self, client: redis.Redis, settings: RedisSettings, dedup_ttl_ms: int
    ) -> None:
        self._client = client
        self._prefix = settings.key_prefix
        self._max_len = settings.queue_max_len
        self._ttl_ms = max(1, dedup_ttl_ms)
        self._shas: dict[str, str] = {}  # script -> its sha in Redis' script cache
        self._buffer: list[WarmCommand] = []
        self.rejected = 0
        self.requeued = 0  # commands of a re-handled cause queued (and produced) again

    def __len__(self) -> int:
        return len(self._buffer)

    def write(self, commands: Sequence[WarmCommand]) -> None:
        """Buffer commands until the next ``flush``."""
        self._buffer.extend(commands)

    def flush(self) -> list[WarmCommand]:
        """Write the buffer; return the commands Redis queued: new ones and those of a
        re-handled cause (``warmqueue``), not those a marker of another cause suppressed.

        Raises ``SinkUnavailableError`` when Redis cannot take them now (no answer, or
        a reply ``redisfaults.unavailable`` names); the commands stay buffered, for the
        caller to ``discard`` (their events get re-handled). Any other error reply (a
        bug: a key of the wrong type, a broken script) raises as redis-py raised it.
        """
        batch, self._buffer = self._buffer, []
        if not batch:
            return []
        groups = self._group(batch)
        try:
            flags = self._execute(groups)
        except RedisError as exc:
            self._shas.clear()
            self._buffer = batch + self._buffer
            if not unavailable(exc):
                raise
            msg = f"redis unavailable while writing {len(batch)} warm commands: {exc}"
            raise SinkUnavailableError(msg) from exc
        written = []
        for cmds, replies in zip(groups.values(), flags, strict=True):
            for cmd, flag in zip(cmds, replies, strict=True):
                if flag != SUPPRESSED:
                    written.append(cmd)
                    self.requeued += flag == REQUEUED
        return written

    def ping(self) -> bool:
        """True when Redis takes writes: the ``PROBE`` script's ``SET``, which a replica
        (READONLY), a full Redis (OOM), a busy script or a loading Redis refuse (a
        ``PING`` would answer, and end an outage that writes cannot)."""
        try:
            self._run(PROBE, [([probe_key(self._prefix)], [PROBE_TTL_MS])])
        except RedisError as exc:
            if unavailable(exc):
                return False
            raise
        return True

    def discard(self) -> list[WarmCommand]:
        """Drop and return whatever is buffered (used when Redis is down)."""
        batch, self._buffer = self._buffer, []
        return batch

    def _group(self, batch: list[WarmCommand]) -> dict[str, list[WarmCommand]]:
        groups: dict[str, list[WarmCommand]] = {}
        for cmd in batch:
            if not valid_tenant(cmd.tenant):  # never write outside a tenant prefix
                self.rejected += 1
                continue
            groups.setdefault(cmd.tenant, []).append(cmd)
        return groups

    def _execute(self, groups: dict[str, list[WarmCommand]]) -> list[list[int]]:
        prefix = self._prefix
        tenants, wake = tenants_key(prefix), wake_key(prefix)
        calls: list[tuple[list[str], list[Any]]] = []
        for tenant, cmds in groups.items():
            keys = [queue_key(prefix, tenant), expiry_key(prefix, tenant), tenants, wake]
            life = queue_life_ms(cmd.expires_at - cmd.issued_at for cmd in cmds)
            args: list[Any] = [self._ttl_ms, self._max_len, tenant, life]
            for cmd in cmds:
                keys.append(marker_key(prefix, tenant, cmd.key))
                args += (repr(cmd.score), cmd.key, cmd.expires_at, encode(cmd), cmd.source)
            calls.append((keys, args))
        return [[int(f) for f in flags] for flags in self._run(ENQUEUE, calls)]

    def _run(self, script: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run ``script`` once per (keys, args) call, in one pipelined round trip."""
        sha = self._shas.get(script) or self._load(script)
        try:
            return self._pipeline(sha, calls)
        except NoScriptError:  # Redis restarted and lost its script cache
            return self._pipeline(self._load(script), calls)

    def _load(self, script: str) -> str:
        sha = self._shas[script] = str(self._client.script_load(script))
        return sha

    def _pipeline(self, sha: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)
        return list(pipe.execute())


class KafkaSink:
    """Produces warm commands to ``warm-commands`` keyed by tenant (flushed at checkpoints)."""

    def __init__(self, produce: Callable[[str, str, bytes], None], topic: str) -> None:
        self._produce = produce
        self._topic = topic

    def write(self, commands: Sequence[WarmCommand]) -> None:
        """Queue one record per command."""
        for cmd in commands:
            self._produce(self._topic, cmd.tenant, encode(cmd))
