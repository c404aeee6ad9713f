"""One run of ``bench live`` (steps 1-3 of ``bench.live``): serve, the loader, the app.

``run_once`` starts ``serve`` (publishing the LSTM first when there is one), runs the
application's replay against the chosen cache with the loader filling it, waits until
serve has consumed everything, and reads the warm commands back to time each warm.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stream_warmer.bench.appcache import AppCache, LiveLru, Produced, replay_as_app, start_loader
from stream_warmer.bench.timeliness import (
    Landed,
    cause_index,
    match_warms,
    read_commands,
    stage_ms,
)
from stream_warmer.events import AccessEvent, WarmCommand
from stream_warmer.settings import Settings

if TYPE_CHECKING:
    from stream_warmer.trainer.store import Artifact

log = logging.getLogger(__name__)
CacheKind = Literal["lru", "redis"]


@dataclass(frozen=True)
class LiveOptions:
    """What ``bench live`` runs: the paces, strategies and cache, where logs go."""

    trace: str
    strategies: tuple[str, ...]
    rates: tuple[float, ...] = ()
    speedups: tuple[float, ...] = ()
    cache: CacheKind = "lru"
    capacity: int | None = None  # None: capacity_for(cache_frac, distinct pairs)
    cache_frac: float = 0.01
    k: int = 1
    log_dir: Path = Path(".devstack/bench-live")
    environ: dict[str, str] = field(default_factory=dict)
    settle_s: float = 1.0  # after serve consumed the last event: the last warms land
    app_linger_ms: float = 5.0  # the application's producer (the clients' default)


@dataclass
class Run:
    """What one run measured (counted half), whatever the cache."""

    hit_ratio: float
    none_hit_ratio: float  # the unwarmed control cache (nan: it equals the offline one)
    requests: int
    warms_per_request: float
    latencies_ms: list[float]  # event -> cache, per warm that landed
    delays: list[float]  # the same, in requests
    commands: int
    rate: float
    stages: dict[str, list[float]] = field(default_factory=dict)  # timeliness.stage_ms
    serve: dict[str, float] = field(default_factory=dict)  # serve_counts

    @property
    def delay(self) -> float:
        """The median delay in requests (0 when nothing landed)."""
        return float(statistics.median(self.delays)) if self.delays else 0.0


def run_once(settings: Settings, events: Sequence[AccessEvent], opts: LiveOptions,
              strategy: str, capacity: int, *, model: Artifact | None,
              rate: float | None, speedup: float | None) -> Run:
    """Steps 1-3 for one strategy at one pace (``model``: published before serve starts)."""
    from stream_warmer.bench.resources import BenchResources
    from stream_warmer.localstack import child, free_port

    opts.log_dir.mkdir(parents=True, exist_ok=True)
    with BenchResources(settings) as res:
        # the broker stamps each event when it appends it: the produce stage is timed
        topics = {name: res.topic(f"live-{name}") for name in ("warm", "dlq")}
        topics["events"] = res.topic("live-events", {"message.timestamp.type": "LogAppendTime"})
        port = free_port()
        # the operator's configuration: serve knows the warmed cache's capacity (it
        # sizes the LSTM's budget when model.budget_online is on)
        env = {**opts.environ, **_serve_env(res, topics, strategy, opts.k, port),
               "STREAM_WARMER_MODEL__CACHE_CAPACITY": str(capacity)}
        if model is not None:
            env |= _publish(res, model)
        loop = _Loop(res.settings, events, topics["events"], rate, speedup, opts.app_linger_ms)
        with child("serve", env, opts.log_dir):
            _wait_until_serving(port, model is not None)
            if opts.cache == "lru":
                finish = _with_lru(loop, capacity, port, opts.settle_s)
            else:
                finish = _with_redis(loop, capacity, env, port, opts)
            counts = serve_counts(port)
        commands = read_commands(res.settings, topics["warm"], int(counts["warm_commands"]))
    return replace(finish(commands), serve=counts)


def serve_counts(port: int) -> dict[str, float]:
    """Serve's own counts at the end of a run (the whole run, both halves): commands
    written, predictions dropped by the policy (``dropped_<reason>``), events never asked
    about (``coalesced_events``), the mean events and tenants per micro-batch and the
    strategy's mean predict time per micro-batch."""
    from stream_warmer.demoreport import scrape

    page = scrape(port)

    def mean(name: str, scale: float = 1.0) -> float:
        value = _mean(page, "stream_warmer_" + name)
        return math.nan if value is None else round(scale * value, 2)

    out = {"warm_commands": _total(page, "stream_warmer_warm_commands_total"),
           "coalesced_events": _total(page, "stream_warmer_coalesced_events_total"),
           "batch_events_mean": mean("batch_events"),
           "batch_tenants_mean": mean("batch_tenants"),
           "inference_ms_mean": mean("inference_seconds", 1000.0)}
    for labels, value in page.get("stream_warmer_warm_dropped_total", []):
        out["dropped_" + labels.get("reason", "?")] = value
    return out


@dataclass
class _Loop:
    """The application's side of one run: what to replay, how fast, where to."""

    settings: Settings
    events: Sequence[AccessEvent]
    topic: str
    rate: float | None
    speedup: float | None
    linger_ms: float  # an application's producer, not tuned for us (by default)
    seconds: float = 0.0

    def replay(self, cache: AppCache) -> Produced:
        from confluent_kafka import Producer

        producer = Producer(self.settings.kafka.client_config() | {"linger.ms": self.linger_ms})
        started = time.monotonic()
        produced = replay_as_app(self.events, cache, producer, self.topic,
                                 rate=self.rate, speedup=self.speedup)
        self.seconds = time.monotonic() - started
        return produced

    @property
    def measured_rate(self) -> float:
        return self.rate or len(self.events) / max(self.seconds, 1e-9)


# a run, before its warm commands are read back: what turns them into its result
_Finish = Callable[[list[WarmCommand]], Run]


def _with_lru(loop: _Loop, capacity: int, port: int, settle_s: float) -> _Finish:
    """``--cache lru``: the loader's code in this process fills the exact LRU."""
    cache = LiveLru(capacity, len(loop.events) // 2)
    stop = threading.Event()
    loader = start_loader(loop.settings, cache, stop)
    produced = loop.replay(cache)
    _wait_consumed(port, len(loop.events))
    time.sleep(settle_s)
    stop.set()
    loader.join(30)

    def finish(commands: list[WarmCommand]) -> Run:
        landed = match_warms(cache.puts, commands, produced)
        sim = cache.sim
        return Run(sim.hit_ratio(), math.nan, sim.requests, sim.warms_per_request(),
                    [w.latency_ms(produced) for w in landed], [float(w.delay) for w in landed],
                    len(commands), loop.measured_rate, stage_ms(landed, produced))

    return finish


def _with_redis(loop: _Loop, capacity: int, env: dict[str, str], port: int,
                opts: LiveOptions) -> _Finish:
    """``--cache redis``: a real cache Redis, filled by a real ``load`` process."""
    from stream_warmer.bench.rediscache import DEFAULT_PAYLOAD_BYTES, RedisAppCache, cache_redis
    from stream_warmer.localstack import child, free_port

    ls = loop.settings.loader
    payload = DEFAULT_PAYLOAD_BYTES
    cache_port, load_port = free_port(), free_port()
    half = len(loop.events) // 2
    loaded_at_half: list[float] = []
    fmt, logs = ls.cache_key_format, opts.log_dir
    with cache_redis(cache_port, capacity, loop.events, fmt, payload_bytes=payload,
                     log_dir=logs) as client, \
            cache_redis(free_port(), capacity, loop.events, fmt, payload_bytes=payload,
                        log_dir=logs) as control_client:
        control = RedisAppCache(control_client, ls.cache_key_format, payload, half)
        app = RedisAppCache(client, ls.cache_key_format, payload, half, control=control,
                            on_half=lambda: loaded_at_half.append(_loaded(load_port)))
        load_env = env | {"STREAM_WARMER_LOADER__CACHE_URL": f"redis://127.0.0.1:{cache_port}/0",
                          "STREAM_WARMER_LOADER__ORIGIN_PAYLOAD_BYTES": str(payload),
                          "STREAM_WARMER_METRICS__PORT": str(load_port)}
        with child("load", load_env, opts.log_dir):
            _wait_until(lambda: _metric(load_port, "stream_warmer_loader_popped_total")
                        is not None, "load did not start (see its log)")
            produced = loop.replay(app)
            _wait_consumed(port, len(loop.events))
            time.sleep(opts.settle_s)
            loaded = _loaded(load_port) - (loaded_at_half or [0.0])[0]
            pop_to_cache_ms = _mean_ms(load_port, "stream_warmer_loader_pop_to_cache_seconds")
        app.finish()
        control.finish()
    log.info("cache redis counters (counted half)", extra=app.server)

    def finish(commands: list[WarmCommand]) -> Run:
        # per command: serve's part (event -> queued, exact), plus the loader's mean
        # pop -> cache time (its wait in the queue is not seen); the loader runs in its
        # own process, so which queued command each write came from is not seen here
        per_request = loop.measured_rate / 1000.0
        landed = []
        for cmd in commands:
            if (i := cause_index(cmd.source, produced)) is not None:
                at_ms = cmd.issued_at + round(pop_to_cache_ms)
                landed.append(Landed(i, cmd.issued_at, at_ms,
                                     round((at_ms - produced.ts[i]) * per_request)))
        lat = [w.latency_ms(produced) for w in landed]
        return Run(app.hit_ratio(), control.hit_ratio(), app.requests,
                    loaded / max(app.requests, 1), lat,
                    [ms * per_request for ms in lat], len(commands), loop.measured_rate,
                    stage_ms(landed, produced))

    return finish


def _loaded(port: int) -> float:
    return _metric(port, "stream_warmer_loader_loaded_total") or 0.0


def _mean_ms(port: int, name: str) -> float:
    from stream_warmer.demoreport import scrape

    return 1000.0 * (_mean(scrape(port), name) or 0.0)


Page = dict[str, list[tuple[dict[str, str], float]]]  # demoreport.scrape's


def _total(page: Page, name: str) -> float:
    """A metric's value, summed over its labels (0 when absent)."""
    return sum(v for _, v in page.get(name, []))


def _mean(page: Page, name: str) -> float | None:
    """A histogram's mean (its ``_sum`` over its ``_count``), None when empty."""
    count = _total(page, name + "_count")
    return _total(page, name + "_sum") / count if count else None


def _serve_env(res: Any, topics: dict[str, str], strategy: str, k: int, port: int
               ) -> dict[str, str]:
    s = res.settings
    return {
        "STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "STREAM_WARMER_KAFKA__CONSUMER_GROUP": res.group("live-serve"),
        "STREAM_WARMER_TOPICS__ACCESS_EVENTS": topics["events"],
        "STREAM_WARMER_TOPICS__WARM_COMMANDS": topics["warm"],
        "STREAM_WARMER_TOPICS__DEAD_LETTER": topics["dlq"],
        "STREAM_WARMER_REDIS__URL": s.redis.url,
        "STREAM_WARMER_REDIS__KEY_PREFIX": s.redis.key_prefix,
        "STREAM_WARMER_STRATEGY__NAME": strategy,
        "STREAM_WARMER_STRATEGY__K": str(k),
        "STREAM_WARMER_METRICS__PORT": str(port),
        "STREAM_WARMER_METRICS__LOG_FORMAT": "text",
    }


def _metric(port: int, name: str) -> float | None:
    from stream_warmer.demoreport import scrape

    page = scrape(port)
    return _total(page, name) if page else None


def _wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _wait_until_serving(port: int, model: bool) -> None:
    """Until serve's /metrics answers (and serves the published model), then the join."""
    _wait_until(lambda: _serving(port, model),
                "serve did not start (see its log in the bench log dir)")
    time.sleep(3.0)  # the group join: events sent before it would all wait for it


def _serving(port: int, model: bool) -> bool:
    from stream_warmer.demoreport import scrape
    from stream_warmer.strategies.base import BASELINE_VERSION

    page = scrape(port)
    if not model:
        return bool(page)
    versions = page.get("stream_warmer_model_version_info", [])
    return any(v > 0 and lab.get("version") != BASELINE_VERSION for lab, v in versions)


def _publish(res: Any, artifact: Artifact) -> dict[str, str]:
    """Publish ``artifact`` into the run's model store and a fresh updates topic."""
    from stream_warmer.trainer.publish import ModelPublisher
    from stream_warmer.trainer.store import open_store

    s = res.settings
    topic = res.topic("live-updates")
    store = open_store(s.model.model_copy(update={"store": "redis"}), s.redis)
    ModelPublisher(store, s.kafka, topic, s.model.name).publish(
        artifact, {"source": "bench live"}, time.time_ns() // 1_000_000)
    return {"STREAM_WARMER_TOPICS__MODEL_UPDATES": topic,
            "STREAM_WARMER_MODEL__STORE": "redis",
            "STREAM_WARMER_MODEL__CPU_THREADS": "1"}


def _wait_consumed(port: int, total: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (_metric(port, "stream_warmer_events_total") or 0) < total:
        if time.monotonic() > deadline:
            msg = f"serve consumed fewer than {total} events in {timeout_s:.0f} s"
            raise TimeoutError(msg)
        time.sleep(0.1)
