"""The settings of the streaming side: Kafka, topics, Redis, events, windows, batches,
the warm policy, the loader and metrics (``stream_warmer.settings`` re-exports them)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

ENV_PREFIX = "STREAM_WARMER_"
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# librdkafka options ``kafka.extra`` may not set: serve stores and commits offsets
# itself, only after their events' side effects (auto commit or auto offset store
# would commit past events not yet handled); the group is ``consumer_group`` (extra
# applies to every client, so a group.id there would put the trainer in serve's group)
_FORBIDDEN_EXTRA = {
    "enable.auto.commit": "serve commits offsets itself, after their side effects",
    "auto.commit.enable": "serve commits offsets itself, after their side effects",
    "enable.auto.offset.store": "serve stores offsets itself, after their side effects",
    "group.id": "set kafka.consumer_group / trainer.consumer_group instead",
}
_SAFE_ACKS = {"all", "-1"}  # a delivery report must mean the record is replicated



class Section(BaseModel):
    """A frozen settings section that rejects unknown names."""

    model_config = ConfigDict(frozen=True, extra="forbid")



class KafkaSettings(Section):
    """Connection to the Kafka cluster; ``extra`` passes librdkafka options through."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    consumer_group: str = Field("stream-warmer", min_length=1)
    client_id: str = "stream-warmer"
    session_timeout_ms: int = Field(45_000, ge=6_000, le=300_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000, le=3_600_000)
    # serve's consumer group. cooperative-sticky (incremental): a rebalance moves only
    # the partitions that change owner, and the others keep their per-tenant state
    # (windows, strategy tables); range / roundrobin (eager) revoke every partition of
    # every replica on each group change. A group cannot mix the two kinds (and
    # librdkafka cannot list both), so a running group changes kind with a full
    # restart: every replica stopped, then started with the new value
    partition_assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = (
        "cooperative-sticky")
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _safe_extra(cls, value: dict[str, str]) -> dict[str, str]:
        for option, setting in value.items():
            name = option.strip().lower()
            why = _FORBIDDEN_EXTRA.get(name)
            if name == "partition.assignment.strategy":
                why = "set kafka.partition_assignment_strategy instead"
            weak_acks = setting.strip().lower() not in _SAFE_ACKS
            if why is None and name in {"acks", "request.required.acks"} and weak_acks:
                why = "warm commands and dead letters need acks=all before a commit"
            if why is not None:
                msg = f"librdkafka option {name!r} may not be set in kafka.extra: {why}"
                raise ValueError(msg)
        return value

    def client_config(self) -> dict[str, Any]:
        """librdkafka options common to producers, consumers and the admin client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(self.extra)
        return conf


class TopicSettings(Section):
    """Topic names and how ``topics create`` makes them."""

    access_events: str = "access-events"
    warm_commands: str = "warm-commands"
    dead_letter: str = "access-events-dlq"
    model_updates: str = "model-updates"
    partitions: int = Field(8, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=16)
    retention_ms: int = Field(24 * 3600 * 1000, ge=60_000)

    @field_validator("access_events", "warm_commands", "dead_letter", "model_updates")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        if not _TOPIC_RE.match(value):
            msg = f"topic name {value!r} must be 1-249 chars of [A-Za-z0-9._-]"
            raise ValueError(msg)
        return value


class RedisSettings(Section):
    """Where warm commands, dedup markers and (by default) model artifacts go."""

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    key_prefix: str = Field("sw", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    queue_max_len: int = Field(10_000, ge=1, le=10_000_000)
    socket_timeout_s: float = Field(2.0, gt=0, le=60)
    retry_backoff_max_s: float = Field(10.0, gt=0, le=300)


class EventSettings(Section):
    """Limits of the access-event contract and of the dead letters of bad events."""

    max_key_bytes: int = Field(512, ge=1, le=65_536)
    # a dead letter (key + value) is never larger: the original payload is cut to fit.
    # Well below Kafka's default message.max.bytes (1 MB), and at least room for the
    # letter without its payload; the producer's message.max.bytes must be above it
    dead_letter_max_bytes: int = Field(65_536, ge=4_096, le=900_000)
    # events whose ts is further ahead of serve's clock are dead-lettered (future_ts)
    future_ts_tolerance_ms: int = Field(300_000, ge=0, le=7 * 24 * 3600 * 1000)


class WindowSettings(Section):
    """Per-tenant sliding windows, bounded in length and in tenants held."""

    length: int = Field(32, ge=1, le=4096)
    # at most model.max_state_slots when the LSTM serves (checked at load: a tenant
    # beyond the model's state slots would lose its recurrent state and candidates
    # while its window is still held)
    max_tenants: int = Field(65_536, ge=1, le=10_000_000)
    idle_evict_s: float = Field(3600.0, gt=0)


class BatchSettings(Section):
    """Micro-batching: flush at ``max_batch`` tenants or ``max_delay_ms``, whichever first."""

    max_batch: int = Field(1024, ge=1, le=65_536)
    # events of one tenant predicted per flush by a strategy that predicts from an event
    # alone (the baselines); older ones are coalesced. 16 lets a high-rate tenant's
    # requests each get a prediction (bench live, lirs_mix5 at 400 ev/s: markov 0.214
    # -> 0.264 live, where 1 predicts once per tenant per micro-batch); predictions of
    # keys the tenant requested later in the same batch are dropped ("answered"), so
    # at 92k ev/s it writes ~2.5x the commands of 1, not ~4x (bench pipeline: p99 18 ->
    # 30 ms, throughput ratio 0.93 -> 0.75)
    max_events_per_tenant: int = Field(16, ge=1, le=4096)
    # 1 ms: a warm is worth something only if it lands before its request, and the
    # batching wait is serve's own part of that trip (bench live, lirs_mix5 at
    # 2,000 ev/s, markov: 5 ms batching + 5 ms fetch wait -> p50 12 ms, delay 24
    # requests, live hit ratio 0.219; 1 ms + 2 ms -> p50 9 ms, delay 18, 0.277);
    # bench pipeline's throughput ratio is unchanged (one Redis round trip per
    # flush is cheap beside a poll batch's handling)
    max_delay_ms: float = Field(1.0, gt=0, le=60_000)
    poll_batch: int = Field(2048, ge=1, le=100_000)
    # the broker answers a fetch once it has fetch_min_bytes or after fetch_max_wait_ms:
    # with librdkafka's 1 byte it answered every few messages, and the fetch/response
    # churn cost the broker and the consumer CPU that, on a small host, showed as a
    # latency tail (bench pipeline latency step, 86k ev/s on 2 cores: p99 ~55 ms vs
    # ~370 ms); at low rates an event waits at most fetch_max_wait_ms for its fetch.
    # 2 ms (was 5): the wait is in every warm's trip; an idle serve then costs the
    # broker ~15% of a core (8 partitions; 10% at 5 ms, 21% at 1 ms)
    fetch_min_bytes: int = Field(65_536, ge=1, le=100_000_000)
    fetch_max_wait_ms: int = Field(2, ge=0, le=500)
    checkpoint_interval_s: float = Field(1.0, gt=0, le=600)
    # freeze the heap at each checkpoint: the cyclic GC then stops rescanning the
    # long-lived windows and strategy tables (full collections took ~90 ms)
    gc_freeze: bool = True


class PolicySettings(Section):
    """Between strategy and sinks: threshold, budgets, dedup, staleness."""

    # 0: each strategy's own threshold decides (the LSTM's trained one, pg's), as in
    # `evaluate`; a second cut here starved the LSTM live (its threshold is ~0.01-0.04)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    adaptive_threshold: bool = True  # raises min_confidence at low precision (inert at 0)
    tenant_budget_per_s: float = Field(1000.0, gt=0)
    global_budget_per_s: float = Field(50_000.0, gt=0)
    # a burst filter, of the order of the event-to-cache latency: once a warm has landed,
    # the loader's presence check is the real dedup. 30 s (the old default) suppressed
    # re-warms of keys the cache had long evicted (bench live, lirs_mix5 40 ev/s:
    # 36% of the offline uplift at 30 s)
    dedup_ttl_s: float = Field(0.05, gt=0, le=86_400)
    stale_after_ms: float = Field(5_000.0, gt=0)
    # queue entries carry expires_at = issued_at + this; loaders drop older ones (a
    # prediction this old is for a request that has long come and gone)
    command_ttl_s: float = Field(10.0, gt=0)
    precision_horizon_s: float = Field(60.0, gt=0)
    max_pending: int = Field(100_000, ge=1)


class LoaderSettings(Section):
    """``stream-warmer load``: drain the warm queues into the cache from the origin."""

    # the cache the loader fills (often a different Redis from the queues': one run
    # with maxmemory and allkeys-lru is the normal deployment)
    cache_url: str = "redis://127.0.0.1:6379/1"
    cache_password: SecretStr | None = None
    # the cache's key for (tenant, key); must match what the application reads
    cache_key_format: str = "{tenant}:{key}"
    cache_ttl_s: float = Field(0.0, ge=0)  # 0: no TTL (the cache's eviction decides)
    # "simulated" (a payload after origin_latency_ms) or "module:function", called
    # as function(tenant, key) -> bytes | None (None: the origin has no such key)
    origin: str = Field("simulated", min_length=1)
    origin_latency_ms: float = Field(1.0, ge=0, le=60_000)
    origin_payload_bytes: int = Field(64, ge=0, le=64 * 1024 * 1024)
    concurrency: int = Field(8, ge=1, le=1024)  # origin fetches in flight
    rate_per_s: float = Field(10_000.0, gt=0)  # origin fetches per second, all tenants
    batch_per_tenant: int = Field(8, ge=1, le=10_000)  # entries popped per tenant per turn
    max_attempts: int = Field(3, ge=1, le=100)  # tries of one origin fetch
    retry_backoff_s: float = Field(0.05, gt=0, le=60)  # first retry wait, doubled each time
    retry_backoff_max_s: float = Field(2.0, gt=0, le=600)
    idle_wait_s: float = Field(0.05, gt=0, le=60)  # longest block on the wake list


class MetricsSettings(Section):
    """Prometheus ``/metrics`` and ``/healthz``."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65_535)
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


