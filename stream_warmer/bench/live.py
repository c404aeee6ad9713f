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
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from stream_warmer.bench.appcache import LiveLru, replay_as_app
from stream_warmer.bench.timeliness import (
    match_warms,
    median_delay,
    percentile,
    read_commands,
    uplift_ratio,
)
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings

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
    offline = _Offline(settings, events, capacity, opts.k)
    none = offline.hit_ratio("none", 0)
    paces = [(r, None) for r in opts.rates] + [(None, s) for s in opts.speedups]
    rows = []
    for strategy in opts.strategies:
        best = offline.hit_ratio(strategy, 0)
        for rate, speedup in paces:
            run = _run_once(settings, events, opts, strategy, capacity, rate=rate,
                            speedup=speedup)
            delay = run.delay
            delayed = offline.hit_ratio(strategy, round(delay))
            hit, wpr = run.cache.sim.hit_ratio(), run.cache.sim.warms_per_request()
            lat = [m for m, _ in run.matched]
            rows.append(LiveRow(
                opts.trace, strategy, round(rate or len(events) / max(run.seconds, 1e-9), 1),
                capacity, run.cache.sim.requests, round(hit, 4), round(none, 4),
                round(best, 4), round(uplift_ratio(hit, none, best), 3), delay,
                round(delayed, 4), round(wpr, 3), percentile(lat, 50), percentile(lat, 99),
                opts.cache, speedup, len(run.matched), run.commands))
            log.info("live row", extra=rows[-1].row())
    return rows


@dataclass
class _Run:
    cache: LiveLru
    matched: list[tuple[float, int]]
    commands: int
    seconds: float

    @property
    def delay(self) -> float:
        return median_delay(self.matched)


def _run_once(settings: Settings, events: Sequence[AccessEvent], opts: LiveOptions,
              strategy: str, capacity: int, *, rate: float | None, speedup: float | None
              ) -> _Run:
    """Steps 1-3 for one strategy at one pace."""
    from confluent_kafka import Producer

    from stream_warmer.bench.resources import BenchResources
    from stream_warmer.demo import child, free_port

    with BenchResources(settings) as res:
        topics = {name: res.topic(f"live-{name}") for name in ("events", "warm", "dlq")}
        port = free_port()
        env = {**opts.environ, **_serve_env(res, topics, strategy, opts.k, port)}
        cache = LiveLru(capacity, len(events) // 2)
        opts.log_dir.mkdir(parents=True, exist_ok=True)
        with child("serve", env, opts.log_dir):
            _wait_until_serving(port)
            stop = threading.Event()
            loader = _start_loader(res.settings, cache, stop)
            producer = Producer(res.settings.kafka.client_config() | {"linger.ms": 5})
            started = time.monotonic()
            produced = replay_as_app(events, cache, producer, topics["events"],
                                     rate=rate, speedup=speedup)
            seconds = time.monotonic() - started
            _wait_consumed(port, len(events))
            time.sleep(opts.settle_s)
            stop.set()
            loader.join(30)
        commands = read_commands(res.settings, topics["warm"], 0)
    matched = match_warms(cache.puts, commands, produced)
    return _Run(cache, matched, len(commands), seconds)


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


def _wait_until_serving(port: int, timeout_s: float = 60.0) -> None:
    """Until serve's /metrics answers and its consumer has joined (a few seconds more)."""
    deadline = time.monotonic() + timeout_s
    while _metric(port, "stream_warmer_events_total") is None:
        if time.monotonic() > deadline:
            msg = "serve did not start (see its log in the bench log dir)"
            raise TimeoutError(msg)
        time.sleep(0.2)
    time.sleep(3.0)  # the group join: events sent before it would all wait for it


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
    """Step 4: the §5 replay of the same events and C, cached per (strategy, delay)."""

    def __init__(self, settings: Settings, events: Sequence[AccessEvent], capacity: int,
                 k: int) -> None:
        self._settings, self._events, self._capacity, self._k = settings, events, capacity, k
        self._done: dict[tuple[str, int], float] = {}

    def hit_ratio(self, strategy: str, delay: int) -> float:
        """The offline hit ratio of the strategy serve runs under that name."""
        from stream_warmer.evaluation.warmeval import StrategySpec, evaluate_events
        from stream_warmer.strategies import build_baseline

        key = (strategy, delay)
        if key not in self._done:
            spec = StrategySpec(strategy,
                                lambda: build_baseline(strategy, self._settings.strategy))
            row = evaluate_events(self._events, spec, self._k, self._capacity, delay=delay)
            self._done[key] = row.hit_ratio
        return self._done[key]


def _start_loader(settings: Settings, cache: LiveLru, stop: threading.Event
                  ) -> threading.Thread:
    """The loader's own code, in a thread of this process, filling the in-process LRU."""
    from stream_warmer.load.loader import Loader
    from stream_warmer.load.origin import resolve_origin
    from stream_warmer.serve.sinks import redis_client

    loader = Loader(redis_client(settings.redis), settings.loader, settings.redis.key_prefix,
                    cache, resolve_origin(settings.loader))
    thread = threading.Thread(target=loader.run, args=(stop,), name="bench-loader",
                              daemon=True)
    thread.start()
    return thread
