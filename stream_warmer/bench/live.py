"""``bench live`` (DESIGN §8): the closed loop, measured end to end.

For each strategy and rate, on fresh topics and a fresh Redis prefix:

1. ``stream-warmer serve`` starts as a real process (the given settings, strategy
   and k; everything else at its default) and the loader starts: with
   ``--cache lru`` the loader's own code runs in this process against an exact
   object-count LRU of capacity C (comparable with DESIGN §5); with ``--cache redis``
   ``stream-warmer load`` runs as a real process and fills the cache Redis.
2. This process acts as the application: it replays the trace in order at ``rate``
   events/s (or ``speedup`` x the trace's own time); for each request it looks the
   key up in the cache (hit, or miss and insert, as an application fills its cache
   on a miss), then produces the access event (``ts`` = now) keyed by tenant.
3. When serve has consumed every event, the loop stops; the ``warm-commands`` topic
   is read back to tie every warm that reached the cache to the event that caused it
   (its ``source`` offset): event-to-cache latency in ms and in requests.
4. Offline, on the same events and C, in the same run: no warming, the strategy at
   delay 0 (§5) and at the measured median delay (``evaluate --delay``).

Counted on the last 50% of requests, as in §5. Everything created is deleted.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stream_warmer.bench.appcache import AppCache, LiveLru, Produced, replay_as_app, start_loader
from stream_warmer.bench.timeliness import (
    cause_index,
    match_warms,
    percentile,
    read_commands,
    uplift_ratio,
)
from stream_warmer.events import AccessEvent, WarmCommand
from stream_warmer.settings import Settings

if TYPE_CHECKING:
    from stream_warmer.strategies.base import WarmingStrategy
    from stream_warmer.trainer.store import Artifact

log = logging.getLogger(__name__)
CacheKind = Literal["lru", "redis"]


@dataclass(frozen=True)
class LiveRow:
    """One JSON row of ``bench live`` (the fields of DESIGN §8, then details)."""

    trace: str
    strategy: str
    rate: float
    capacity: int
    requests: int
    hit_ratio: float
    none_hit_ratio: float
    offline_hit_ratio: float
    uplift_ratio: float
    delay_requests: float
    delay_offline_hit_ratio: float
    warms_per_request: float
    latency_p50_ms: float
    latency_p99_ms: float
    cache: str = "lru"
    # the same requests, at the same pace, on a second cache that nothing warms: with
    # the exact LRU it equals none_hit_ratio; a real Redis's approximate LRU differs
    live_none_hit_ratio: float = float("nan")
    speedup: float | None = None
    warms_matched: int = 0
    warm_commands: int = 0

    def row(self) -> dict[str, Any]:
        """As a dict for ``--json``."""
        return asdict(self)


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


def run_live(settings: Settings, events: Sequence[AccessEvent], opts: LiveOptions
             ) -> list[LiveRow]:
    """Every strategy at every pace; the offline rows computed once per strategy."""
    from stream_warmer.evaluation.warmeval import capacity_for, scan

    stats = scan(events)
    capacity = opts.capacity or capacity_for(opts.cache_frac, stats.distinct)
    artifact = _train_lstm(settings, events) if "lstm" in opts.strategies else None
    offline = _Offline(settings, events, capacity, opts.k, artifact)
    none = offline.hit_ratio("none", 0)
    paces = [(r, None) for r in opts.rates] + [(None, s) for s in opts.speedups]
    rows = []
    for strategy in opts.strategies:
        best = offline.hit_ratio(strategy, 0)
        for rate, speedup in paces:
            model = artifact if strategy == "lstm" else None
            run = _run_once(settings, events, opts, strategy, capacity, model=model, rate=rate,
                            speedup=speedup)
            delayed = offline.hit_ratio(strategy, round(run.delay))
            live_none = none if math.isnan(run.none_hit_ratio) else run.none_hit_ratio
            gain = uplift_ratio(run.hit_ratio - live_none + none, none, best)
            rows.append(LiveRow(
                opts.trace, strategy, round(run.rate, 1), capacity, run.requests,
                round(run.hit_ratio, 4), round(none, 4), round(best, 4),
                round(gain, 3), round(run.delay, 1),
                round(delayed, 4), round(run.warms_per_request, 3),
                round(percentile(run.latencies_ms, 50), 1),
                round(percentile(run.latencies_ms, 99), 1),
                opts.cache, round(live_none, 4), speedup, len(run.latencies_ms), run.commands))
            log.info("live row", extra=rows[-1].row())
    return rows


@dataclass
class _Run:
    """What one run measured (counted half), whatever the cache."""

    hit_ratio: float
    none_hit_ratio: float  # the unwarmed control cache (nan: it equals the offline one)
    requests: int
    warms_per_request: float
    latencies_ms: list[float]  # event -> cache, per warm that landed
    delays: list[float]  # the same, in requests
    commands: int
    rate: float

    @property
    def delay(self) -> float:
        """The median delay in requests (0 when nothing landed)."""
        return float(statistics.median(self.delays)) if self.delays else 0.0


def _run_once(settings: Settings, events: Sequence[AccessEvent], opts: LiveOptions,
              strategy: str, capacity: int, *, model: Artifact | None,
              rate: float | None, speedup: float | None) -> _Run:
    """Steps 1-3 for one strategy at one pace (``model``: published before serve starts)."""
    from stream_warmer.bench.resources import BenchResources
    from stream_warmer.demo import child, free_port

    opts.log_dir.mkdir(parents=True, exist_ok=True)
    with BenchResources(settings) as res:
        topics = {name: res.topic(f"live-{name}") for name in ("events", "warm", "dlq")}
        port = free_port()
        env = {**opts.environ, **_serve_env(res, topics, strategy, opts.k, port)}
        if model is not None:
            env |= _publish(res, model)
        loop = _Loop(res.settings, events, topics["events"], rate, speedup)
        with child("serve", env, opts.log_dir):
            _wait_until_serving(port, model is not None)
            if opts.cache == "lru":
                run = _with_lru(loop, capacity, port, opts.settle_s)
            else:
                run = _with_redis(loop, capacity, env, port, opts)
            written = int(_metric(port, "stream_warmer_warm_commands_total") or 0)
        commands = read_commands(res.settings, topics["warm"], written)
    return run.result(commands)


@dataclass
class _Loop:
    """The application's side of one run: what to replay, how fast, where to."""

    settings: Settings
    events: Sequence[AccessEvent]
    topic: str
    rate: float | None
    speedup: float | None
    seconds: float = 0.0

    def replay(self, cache: AppCache) -> Produced:
        from confluent_kafka import Producer

        # the clients' default linger (5 ms): an application's producer, not tuned for us
        producer = Producer(self.settings.kafka.client_config() | {"linger.ms": 5})
        started = time.monotonic()
        produced = replay_as_app(self.events, cache, producer, self.topic,
                                 rate=self.rate, speedup=self.speedup)
        self.seconds = time.monotonic() - started
        return produced

    @property
    def measured_rate(self) -> float:
        return self.rate or len(self.events) / max(self.seconds, 1e-9)


@dataclass
class _Measured:
    """A run before its warm commands are read back."""

    loop: _Loop
    produced: Produced
    finish: Callable[[list[WarmCommand]], _Run]

    def result(self, commands: list[WarmCommand]) -> _Run:
        return self.finish(commands)


def _with_lru(loop: _Loop, capacity: int, port: int, settle_s: float) -> _Measured:
    """``--cache lru``: the loader's code in this process fills the exact LRU."""
    cache = LiveLru(capacity, len(loop.events) // 2)
    stop = threading.Event()
    loader = start_loader(loop.settings, cache, stop)
    produced = loop.replay(cache)
    _wait_consumed(port, len(loop.events))
    time.sleep(settle_s)
    stop.set()
    loader.join(30)

    def finish(commands: list[WarmCommand]) -> _Run:
        matched = match_warms(cache.puts, commands, produced)
        sim = cache.sim
        return _Run(sim.hit_ratio(), math.nan, sim.requests, sim.warms_per_request(),
                    [m for m, _ in matched], [float(d) for _, d in matched], len(commands),
                    loop.measured_rate)

    return _Measured(loop, produced, finish)


def _with_redis(loop: _Loop, capacity: int, env: dict[str, str], port: int,
                opts: LiveOptions) -> _Measured:
    """``--cache redis``: a real cache Redis, filled by a real ``load`` process."""
    from stream_warmer.bench.rediscache import DEFAULT_PAYLOAD_BYTES, RedisAppCache, cache_redis
    from stream_warmer.demo import child, free_port

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

    def finish(commands: list[WarmCommand]) -> _Run:
        # per command: serve's part (event -> queued, exact), plus the loader's mean
        # pop -> cache time; the loader runs in its own process, so which queued
        # command each write came from is not seen here
        lat = [cmd.issued_at - produced.ts[i] + pop_to_cache_ms
               for cmd in commands if (i := cause_index(cmd.source, produced)) is not None]
        per_request = loop.measured_rate / 1000.0
        return _Run(app.hit_ratio(), control.hit_ratio(), app.requests,
                    loaded / max(app.requests, 1), lat,
                    [ms * per_request for ms in lat], len(commands), loop.measured_rate)

    return _Measured(loop, produced, finish)


def _loaded(port: int) -> float:
    return _metric(port, "stream_warmer_loader_loaded_total") or 0.0


def _mean_ms(port: int, name: str) -> float:
    total, count = _metric(port, name + "_sum"), _metric(port, name + "_count")
    return 1000.0 * total / count if total and count else 0.0


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
    from stream_warmer.demo import scrape

    page = scrape(port)
    if not page:
        return None
    return sum(v for _, v in page.get(name, []))


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
    from stream_warmer.demo import scrape
    from stream_warmer.strategies.base import BASELINE_VERSION

    page = scrape(port)
    if not model:
        return bool(page)
    versions = page.get("stream_warmer_model_version_info", [])
    return any(v > 0 and lab.get("version") != BASELINE_VERSION for lab, v in versions)


def _train_lstm(settings: Settings, events: Sequence[AccessEvent]) -> Artifact:
    """Train on the first half with the trainer's own code (as a trainer round does).

    On ``model.cpu_threads`` torch threads, one when unset: this process also replays
    the trace later, beside serve and the broker, and torch's default (one thread per
    core) on a shared 2-core machine made a 83k-event round take 15+ minutes, not ~1.
    """
    import torch

    from stream_warmer.trainer.lstm import lstm_trainer

    torch.set_num_threads(settings.model.cpu_threads or 1)
    started = time.monotonic()
    candidate = lstm_trainer(settings)(events[: len(events) // 2], None)
    log.info("bench live: lstm trained", extra={"s": round(time.monotonic() - started, 1),
                                                "events": len(events) // 2})
    return candidate.artifact


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


_COLUMNS = (("strategy", "{}"), ("rate", "{:g}"), ("capacity", "{}"), ("hit_ratio", "{:.4f}"),
            ("none_hit_ratio", "{:.4f}"), ("offline_hit_ratio", "{:.4f}"),
            ("uplift_ratio", "{:.3f}"), ("delay_requests", "{:g}"),
            ("delay_offline_hit_ratio", "{:.4f}"), ("warms_per_request", "{:.3f}"),
            ("latency_p50_ms", "{:.1f}"), ("latency_p99_ms", "{:.1f}"))


def format_rows(rows: Sequence[LiveRow]) -> str:
    """A markdown table of the rows (the columns of DESIGN §8)."""
    names = ["trace", "cache"] + [c for c, _ in _COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        d = r.row()
        cells = [r.trace, r.cache] + [fmt.format(d[c]) for c, fmt in _COLUMNS]
        if r.speedup:  # paced by the trace's own time: the speed-up, then the mean rate
            cells[3] = f"x{r.speedup:g} ({r.rate:,.0f}/s)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_live(rows: Sequence[LiveRow], path: Path) -> None:
    """PNG: uplift ratio against rate, one line per (trace, strategy, cache)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dict.fromkeys((r.trace, r.strategy, r.cache) for r in rows):
        mine = sorted((r for r in rows if (r.trace, r.strategy, r.cache) == key),
                      key=lambda r: r.rate)
        ax.plot([r.rate for r in mine], [r.uplift_ratio for r in mine], marker="o",
                label=" / ".join(key))
    ax.set_xscale("log")
    ax.set_xlabel("events per second")
    ax.set_ylabel("uplift ratio (live uplift / offline uplift)")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Offline:
    """Step 4: the §5 replay of the same events and C, cached per (strategy, delay).

    The LSTM is the published artifact itself, loaded the way serve's watcher loads it.
    """

    def __init__(self, settings: Settings, events: Sequence[AccessEvent], capacity: int,
                 k: int, artifact: Artifact | None) -> None:
        self._settings, self._events, self._capacity, self._k = settings, events, capacity, k
        self._artifact = artifact
        self._done: dict[tuple[str, int], float] = {}

    def _make(self, strategy: str) -> WarmingStrategy:
        from stream_warmer.strategies import build_baseline
        from stream_warmer.trainer.lstm import lstm_loader

        if strategy == "lstm":
            assert self._artifact is not None
            return lstm_loader(self._settings)(self._artifact, "bench-offline")
        return build_baseline(strategy, self._settings.strategy)

    def hit_ratio(self, strategy: str, delay: int) -> float:
        """The offline hit ratio of the strategy serve runs under that name."""
        from stream_warmer.evaluation.warmeval import StrategySpec, evaluate_events

        key = (strategy, delay)
        if key not in self._done:
            spec = StrategySpec(strategy, lambda: self._make(strategy))
            row = evaluate_events(self._events, spec, self._k, self._capacity, delay=delay)
            self._done[key] = row.hit_ratio
        return self._done[key]
