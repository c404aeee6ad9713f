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

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import redis
from confluent_kafka import KafkaError as _KafkaErr
from confluent_kafka import KafkaException
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from stream_warmer.errors import KafkaError, SinkUnavailableError
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

log = logging.getLogger(__name__)
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


# a delivery failed for the record itself: the same bytes would fail the same way forever
_RECORD_ERRORS = frozenset({_KafkaErr.MSG_SIZE_TOO_LARGE, _KafkaErr.RECORD_LIST_TOO_LARGE,
                            _KafkaErr.INVALID_RECORD, _KafkaErr.INVALID_MSG_SIZE})
Rejected = Callable[[str, str], None]  # (topic, "replaced" | "dropped")
# a full local queue waits at most this long for room (well below max.poll.interval.ms)
MAX_BLOCK_S = 30.0


class Outbox:
    """The app's one producer (warm commands and dead letters).

    Three kinds of failure:

    * a record refused for what it is: by ``produce`` (any non-fatal
      ``KafkaException``, e.g. ``MSG_SIZE_TOO_LARGE``) or in its delivery report (too
      large or invalid for the broker). Sending the same bytes again would fail again,
      so it never stops the app: it is logged and reported to ``on_rejected``, and a
      record with a ``fallback`` (a dead letter's minimal form) is replaced by it;
    * the local queue stays full (``BufferError``) for ``max_block_s`` of serving
      delivery reports, or ``stopping()`` says a stop was requested while it is: the
      record is not queued (the loop must not hang, nor outlive a SIGTERM), and it
      counts as failed, below; once anything failed, a full queue fails at once;
    * any other failed delivery (broker gone, not authorised): counted in ``failed``,
      and the checkpoint then refuses to commit. A fatal producer error raises.
    """

    def __init__(self, producer: Any, on_rejected: Rejected | None = None, *,
                 stopping: Callable[[], bool] = lambda: False,
                 max_block_s: float = MAX_BLOCK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._producer = producer
        self._on_rejected = on_rejected
        self._stopping, self._max_block_s, self._clock = stopping, max_block_s, clock
        self._replacements: list[tuple[str, str, bytes]] = []
        self.failed = 0
        self.last_error: str | None = None

    def produce(self, topic: str, key: str, value: bytes, fallback: bytes | None = None) -> None:
        """Queue a record; when the local queue is full, serve deliveries and retry (for
        at most ``max_block_s``, and not once a stop is requested: see the class)."""
        report = self._delivered if fallback is None else partial(
            self._delivered_or_replace, topic, key, fallback)
        try:
            self._send(topic, key, value, report)
        except KafkaException as exc:
            self._refused(topic, key, fallback, exc.args[0])

    def poll(self) -> None:
        """Serve delivery reports without blocking."""
        self._producer.poll(0)
        self._send_replacements()

    def flush(self, timeout_s: float) -> int:
        """Wait for every queued record (and the replacements of refused ones); return
        how many are still undelivered."""
        left = int(self._producer.flush(timeout_s))
        while self._replacements and not left:  # replacements have no fallback: 1 round
            self._send_replacements()
            left = int(self._producer.flush(timeout_s))
        return left

    def _send(self, topic: str, key: str, value: bytes, report: Callable[[Any, Any], None]
              ) -> None:
        give_up_at: float | None = None
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=report)
                return
            except BufferError:
                now = self._clock()
                give_up_at = now + self._max_block_s if give_up_at is None else give_up_at
                if self.failed or self._stopping() or now >= give_up_at:
                    self._not_queued(topic)
                    return
                self._producer.poll(0.05)

    def _not_queued(self, topic: str) -> None:
        if not self.failed:
            log.error("producer queue full: records not queued, nothing is committed",
                      extra={"topic": topic, "stopping": self._stopping()})
        self.failed += 1
        self.last_error = f"the producer's local queue stayed full (topic={topic!r})"

    def _send_replacements(self) -> None:
        pending, self._replacements = self._replacements, []
        for topic, key, value in pending:
            self.produce(topic, key, value)

    def _refused(self, topic: str, key: str, fallback: bytes | None, err: Any) -> None:
        if err.fatal():
            msg = f"producer failed fatally on topic={topic!r}: {err.str()}"
            raise KafkaError(msg)
        self._rejected(topic, err, fallback is not None)
        if fallback is not None:
            self.produce(topic, key, fallback)

    def _rejected(self, topic: str, err: Any, replaced: bool) -> None:
        outcome = "replaced" if replaced else "dropped"
        log.log(logging.WARNING if replaced else logging.ERROR, "record refused",
                extra={"topic": topic, "outcome": outcome, "error": err.str()})
        if self._on_rejected is not None:
            self._on_rejected(topic, outcome)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        if err.code() in _RECORD_ERRORS:
            self._rejected(msg.topic() if msg is not None else "", err, replaced=False)
            return
        self.failed += 1
        self.last_error = err.str()

    def _delivered_or_replace(self, topic: str, key: str, fallback: bytes, err: Any,
                              msg: Any) -> None:
        if err is not None and err.code() in _RECORD_ERRORS:
            self._rejected(topic, err, replaced=True)
            self._replacements.append((topic, key, fallback))
            return
        self._delivered(err, msg)
