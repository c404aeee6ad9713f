"""Typed, frozen settings, read once at the entry point.

Precedence (highest first): environment variables (``STREAM_WARMER_`` prefix, ``__``
between nested names, e.g. ``STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS``), then a TOML
file (``config/stream-warmer.toml`` by default, or the path given with ``--config``
or ``STREAM_WARMER_CONFIG_FILE``), then the defaults below. Everything inside the
package receives the sub-model it needs; nothing else reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from stream_warmer.errors import ConfigError

ENV_PREFIX = "STREAM_WARMER_"
DEFAULT_CONFIG_FILE = Path("config/stream-warmer.toml")
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


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
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


class TopicSettings(_Section):
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


class RedisSettings(_Section):
    """Where warm commands, dedup markers and (by default) model artifacts go."""

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    key_prefix: str = Field("sw", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    queue_max_len: int = Field(10_000, ge=1, le=10_000_000)
    socket_timeout_s: float = Field(2.0, gt=0, le=60)
    retry_backoff_max_s: float = Field(10.0, gt=0, le=300)


class EventSettings(_Section):
    """Limits of the access-event contract and of the dead letters of bad events."""

    max_key_bytes: int = Field(512, ge=1, le=65_536)
    # a dead letter (key + value) is never larger: the original payload is cut to fit.
    # Well below Kafka's default message.max.bytes (1 MB), and at least room for the
    # letter without its payload; the producer's message.max.bytes must be above it
    dead_letter_max_bytes: int = Field(65_536, ge=4_096, le=900_000)
    # events whose ts is further ahead of serve's clock are dead-lettered (future_ts)
    future_ts_tolerance_ms: int = Field(300_000, ge=0, le=7 * 24 * 3600 * 1000)


class WindowSettings(_Section):
    """Per-tenant sliding windows, bounded in length and in tenants held."""

    length: int = Field(32, ge=1, le=4096)
    # at most model.max_state_slots when the LSTM serves (checked at load: a tenant
    # beyond the model's state slots would lose its recurrent state and candidates
    # while its window is still held)
    max_tenants: int = Field(65_536, ge=1, le=10_000_000)
    idle_evict_s: float = Field(3600.0, gt=0)


class BatchSettings(_Section):
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


class StrategySettings(_Section):
    """Which strategy serves, its fallback, and the baselines' bounds."""

    name: Literal["none", "popularity", "markov", "nextkey", "pg", "mithril", "lstm"] = "markov"
    fallback: Literal["none", "popularity", "markov", "nextkey", "pg", "mithril"] = "markov"
    k: int = Field(1, ge=1, le=64)
    # the successor tables' bounds, for the markov baseline and the LSTM's tracker alike
    # (one implementation: native/src/table.rs); at least trainer.ranks successors
    markov_max_keys_per_tenant: int = Field(50_000, ge=1, le=10_000_000)
    markov_max_successors: int = Field(8, ge=1, le=256)
    popularity_top: int = Field(64, ge=1, le=100_000)
    popularity_halflife_events: int = Field(10_000, ge=1, le=1_000_000_000)
    # pg (probability graph, Griffioen & Appleton '94; strategies/peers.py): arcs x->y for
    # every y within the next pg_lookahead requests of the tenant after x; warm the
    # successors with count(x->y) / all arcs out of x above pg_threshold (0.0025: the
    # classic 5% spread over a 20-request window, as PEERS.md ran it). Memory: at most
    # pg_max_keys_per_tenant keys with arcs out (least recently requested dropped), each
    # with at most pg_max_successors successors (a full key drops its less counted half)
    pg_lookahead: int = Field(20, ge=1, le=1_000)
    pg_threshold: float = Field(0.0025, ge=0.0, lt=1.0)
    pg_max_keys_per_tenant: int = Field(50_000, ge=1, le=10_000_000)
    pg_max_successors: int = Field(64, ge=1, le=1_024)
    # mithril (Yang et al., SoCC '17; strategies/mithril.py): keys requested between
    # min_support and max_support times whose request times pair up within
    # mithril_lookahead requests are associated, and a request warms its associations.
    # mithril_confidence: the share of the paired times that must be that close (1 = all);
    # mining runs when mithril_mining_threshold keys have reached min_support. Memory: at
    # most mithril_max_keys_per_tenant keys recorded and as many with associations, each
    # with at most mithril_max_associations (oldest dropped)
    mithril_lookahead: int = Field(20, ge=1, le=1_000)
    mithril_min_support: int = Field(2, ge=1, le=64)
    mithril_max_support: int = Field(8, ge=1, le=64)
    mithril_confidence: float = Field(1.0, gt=0.0, le=1.0)
    mithril_mining_threshold: int = Field(256, ge=1, le=1_000_000)
    mithril_max_keys_per_tenant: int = Field(50_000, ge=1, le=10_000_000)
    mithril_max_associations: int = Field(8, ge=1, le=256)


InputName = Literal["delta", "top_count", "n_succ", "op", "gap", "size", "tenant", "known",
                    "correct", "present"]


class ModelSettings(_Section):
    """LSTM architecture and inference options."""

    name: str = Field("stream-warmer-lstm", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # the sizes (the head's classes follow from the features: model/features.py). No
    # attention or bidirectional setting: the model serves in streaming mode, one step
    # per event from each tenant's carried state, where neither applies (WarmNet's
    # window mode has both, for experiments); they were read nowhere and are gone
    embed_dim: int = Field(16, ge=1, le=4096)
    hidden: int = Field(64, ge=1, le=8192)
    layers: int = Field(1, ge=1, le=8)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # per-step inputs the model does not see (a feature ablation; model/features.py
    # INPUT_NAMES): the categorical features, and the previous step's ``correct`` and
    # this step's ``present`` class bits. Stored in the model's manifest
    drop_inputs: tuple[InputName, ...] = ()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # served precision: ``auto`` tries bf16 on CUDA (fp32 on the CPU); a candidate is
    # served only after its top-k classes matched fp32's on ``precision_check_rows``
    # live rows at least ``precision_min_agreement`` of the time
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    precision_check_rows: int = Field(20_000, ge=1, le=10_000_000)
    precision_top_k: int = Field(4, ge=1, le=64)
    precision_min_agreement: float = Field(0.999, ge=0.0, le=1.0)
    # torch CPU threads for training (the trainer, the evaluator's training; see
    # model/runtime.py configure_torch_threads); 0 = the cores this process may use
    # (affinity, cgroup quota). Two runs on the same cores should each get their share
    # (STREAM_WARMER_MODEL__CPU_THREADS)
    cpu_threads: int = Field(0, ge=0, le=256)
    # torch CPU threads while the model serves (serve, the evaluator's replay, the
    # benches' serve): a micro-batch is hundreds of small LSTM calls, and each wakes
    # every intra-op thread; measured on 2 cores, the serve path on cache2k_orm_busy ran
    # 139k events/s on 1 thread and 41k on 2. 0 = the cores this process may use
    infer_threads: int = Field(1, ge=0, le=256)
    max_state_slots: int = Field(65_536, ge=1, le=10_000_000)
    store: Literal["redis", "dir"] = "redis"
    store_dir: Path = Path("models")
    # HMAC-SHA256 key shared by the trainer (signs each manifest it stores) and the
    # replicas (reject a version that is unsigned or signed with another key); unset:
    # nothing is signed or checked. At least 16 characters, checked where the store is
    # opened (trainer/signing.py), so that a validation error never echoes the secret
    signing_key: SecretStr | None = None
    # the LSTM's online warm budget (model/budget.py): holds its effective warms per
    # request within budget_margin under the better baseline's (markov, nextkey), in
    # three shadow LRU caches of the warmed cache's capacity. Off by default, in serve
    # and in ``evaluate`` alike (the evaluator's rows are serve's configuration): it
    # needs the cache's capacity, and it costs a Python step per event (8 to 19 us per
    # event in the evaluator's replay of lirs_mix5 and cloudphysics_vm). On: serve needs
    # model.cache_capacity (without it serve warns and keeps the trained threshold);
    # ``evaluate`` and ``bench live`` tell the strategy the C they replay
    budget_online: bool = False
    # objects the warmed cache holds (all tenants this process warms); sizes the online
    # budget's shadow caches
    cache_capacity: int = Field(0, ge=0, le=1_000_000_000)
    budget_margin: float = Field(0.06, ge=0, lt=1)


class TrainerSettings(_Section):
    """The trainer process: buffer, schedule, optimisation, promotion gate."""

    consumer_group: str = Field("stream-warmer-trainer", min_length=1)
    buffer_events: int = Field(200_000, ge=1_000, le=50_000_000)
    retrain_every_events: int = Field(100_000, ge=100)
    retrain_every_s: float = Field(600.0, gt=0)
    epochs: int = Field(40, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65_536)
    seq_len: int = Field(64, ge=2, le=4096)
    lr: float = Field(3e-3, gt=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    patience: int = Field(4, ge=0, le=100)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)
    promote_margin: float = Field(0.0, ge=-1, le=1)
    # a candidate may warm at most (1 + this) x the live model's warms per request
    promote_warm_slack: float = Field(0.1, ge=0, le=1000)
    seed: int = 0
    max_windows: int = Field(4096, ge=1, le=10_000_000)
    burn_in: int = Field(512, ge=0, le=1_000_000)
    n_deltas: int = Field(8, ge=0, le=256)
    ranks: int = Field(2, ge=1, le=8)
    val_cache_frac: float = Field(0.01, gt=0, le=1)
    warm_budget_margin: float = Field(0.03, ge=0, lt=1)
    min_events: int = Field(1_000, ge=10, le=50_000_000)
    gate_fraction: float = Field(0.1, gt=0, lt=0.5)
    gate_cache_fracs: tuple[Annotated[float, Field(gt=0, le=1)], ...] = Field(
        (0.01, 0.1), min_length=1
    )
    # the delay (requests of the whole stream) at which the gate replays every strategy
    # (DESIGN §8): -1 = the one serve measures and reports in Redis (serve/delay.py;
    # reports older than gate_delay_max_age_s are ignored, none: 0), >= 0 = fixed
    gate_delay: int = Field(-1, ge=-1, le=1_000_000)
    gate_delay_max_age_s: float = Field(120.0, gt=0)
    gate_baselines: tuple[Literal["none", "popularity", "markov", "nextkey"], ...] = (
        "popularity",
        "markov",
        "nextkey",
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    poll_batch: int = Field(2048, ge=1, le=100_000)


class PolicySettings(_Section):
    """Between strategy and sinks: threshold, budgets, dedup, staleness."""

    min_confidence: float = Field(0.05, ge=0.0, le=1.0)
    adaptive_threshold: bool = True
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


class LoaderSettings(_Section):
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


class MetricsSettings(_Section):
    """Prometheus ``/metrics`` and ``/healthz``."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65_535)
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """All settings of every process; each component takes only its section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        toml_file=None,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    events: EventSettings = EventSettings()
    window: WindowSettings = WindowSettings()
    batch: BatchSettings = BatchSettings()
    strategy: StrategySettings = StrategySettings()
    model: ModelSettings = ModelSettings()
    trainer: TrainerSettings = TrainerSettings()
    policy: PolicySettings = PolicySettings()
    loader: LoaderSettings = LoaderSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _bounds_agree(self) -> Settings:
        # ConfigError, not ValueError: pydantic would quote the whole input back (with
        # any secrets in it) and name no variable
        if self.strategy.name == "lstm":
            check_lstm_bounds(self.window.max_tenants, self.model.max_state_slots)
        if self.strategy.markov_max_successors < self.trainer.ranks:
            msg = (f"{ENV_PREFIX}STRATEGY__MARKOV_MAX_SUCCESSORS (strategy.markov_max_successors"
                   f"={self.strategy.markov_max_successors}) is below {ENV_PREFIX}TRAINER__RANKS "
                   f"(trainer.ranks={self.trainer.ranks}): the LSTM's successor tables have "
                   "the markov baseline's bounds, and a rank class needs a successor to name")
            raise ConfigError(msg)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        kwargs = init_settings.init_kwargs  # type: ignore[attr-defined]
        toml_file = kwargs.pop("_config_file", None)
        environ = kwargs.pop("_environ", None)
        env_source = env_settings if environ is None else _MappingEnvSource(settings_cls, environ)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_source]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class _MappingEnvSource(EnvSettingsSource):
    """The env layer, read from a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str]) -> None:
        self._mapping = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._mapping, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings once: env over the TOML file over defaults.

    ``environ`` is the process environment (passed in by the CLI, never read here
    directly, so tests can inject their own). A bad value raises ``ConfigError``
    naming the environment variable and what is allowed.
    """
    env = environ if environ is not None else {}
    path = config_file or _config_file_from(env)
    if path is not None and not path.is_file():
        msg = f"config file {str(path)!r} does not exist"
        raise ConfigError(msg)
    try:
        return _build(path, env)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from exc


def _config_file_from(env: dict[str, str]) -> Path | None:
    explicit = env.get(f"{ENV_PREFIX}CONFIG_FILE")
    if explicit:
        return Path(explicit)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _build(path: Path | None, env: dict[str, str]) -> Settings:
    environ = {k: v for k, v in env.items() if k != f"{ENV_PREFIX}CONFIG_FILE"}
    return Settings(_config_file=path, _environ=environ)  # type: ignore[call-arg]


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        var = ENV_PREFIX + "__".join(part.upper() for part in loc)
        lines.append(f"  {var} ({'.'.join(loc)}): {err['msg']}; got {err.get('input')!r}")
    return "\n".join(lines)


def check_lstm_bounds(max_tenants: int, max_state_slots: int) -> None:
    """Raise ``ConfigError`` when the LSTM would serve more windows than state slots."""
    if max_tenants > max_state_slots:
        msg = (f"{ENV_PREFIX}WINDOW__MAX_TENANTS (window.max_tenants="
               f"{max_tenants}) is above {ENV_PREFIX}MODEL__MAX_STATE_SLOTS "
               f"(model.max_state_slots={max_state_slots}): with "
               "strategy.name=lstm a tenant beyond the model's state slots would lose "
               "its recurrent state and candidates while its window is still held; "
               "lower window.max_tenants or raise model.max_state_slots")
        raise ConfigError(msg)
