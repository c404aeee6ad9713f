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
   delay 0 (§5) and at the measured median delay (``evaluate --delay``). "The same
   events" are the ones serve received: each ``ts`` the send time at this pace
   (``_AtPace``), on which the LSTM is also trained, as serve's trainer would be.

Counted on the last 50% of requests, as in §5. Everything created is deleted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_warmer.bench.liverun import CacheKind, LiveOptions, run_once
from stream_warmer.bench.timeliness import STAGES, percentile, uplift_ratio
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings

if TYPE_CHECKING:
    from stream_warmer.strategies.base import WarmingStrategy
    from stream_warmer.trainer.store import Artifact

log = logging.getLogger(__name__)
__all__ = ["CacheKind", "LiveOptions", "LiveRow", "format_rows", "plot_live", "run_live"]


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
    # latency_p50_ms split where it is timed (bench.timeliness.stage_ms): the app's
    # produce -> broker append, append -> command queued, queued -> in the cache
    produce_p50_ms: float = float("nan")
    serve_p50_ms: float = float("nan")
    load_p50_ms: float = float("nan")
    # the delays of one run spread around their median, and the hit ratio is steep in
    # L (a pattern's period): the mean offline hit ratio at the 10th, 30th, ..., 90th
    # percentile of the measured delays, a mixture closer to what the loop does
    delay_mix_offline_hit_ratio: float = float("nan")
    # serve's second cut on the scores (policy.min_confidence; 0: the strategy's own
    # threshold alone): a point of the strategy's live frontier. The offline columns
    # are the strategy uncut.
    min_confidence: float = 0.0
    # serve's own counts over the run (bench.liverun.serve_counts): policy drops by
    # reason, events never asked about, events and tenants per micro-batch
    serve: dict[str, float] = field(default_factory=dict)
    # the LSTM trained, and the offline columns replayed, on the events as serve
    # received them (``_AtPace``); rows before 2026-12-08 used the trace's timestamps
    paced: bool = False

    def row(self) -> dict[str, Any]:
        """As a dict for ``--json``."""
        return asdict(self)


def run_live(settings: Settings, events: Sequence[AccessEvent], opts: LiveOptions
             ) -> list[LiveRow]:
    """Every strategy at every pace; per pace, the LSTM trained and the offline rows
    computed once, on the events as serve receives them at that pace (``_AtPace``)."""
    from stream_warmer.evaluation.warmeval import capacity_for, scan

    stats = scan(events)
    capacity = opts.capacity or capacity_for(opts.cache_frac, stats.distinct)
    paces: list[tuple[float | None, float | None]] = [
        *((r, None) for r in opts.rates), *((None, s) for s in opts.speedups)]
    at = {pace: _AtPace(settings, events, opts, capacity, pace) for pace in paces}
    rows = []
    for strategy in opts.strategies:
        for rate, speedup in paces:
            offline, artifact = at[rate, speedup].ready()
            none, best = offline.hit_ratio("none", 0), offline.hit_ratio(strategy, 0)
            model = artifact if strategy == "lstm" else None
            run = run_once(settings, events, opts, strategy, capacity, model=model, rate=rate,
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
                opts.cache, round(live_none, 4), speedup, len(run.latencies_ms), run.commands,
                **{f"{stage}_p50_ms": round(percentile(run.stages.get(stage, []), 50), 1)
                   for stage in STAGES},
                delay_mix_offline_hit_ratio=round(_mixed(offline, strategy, run.delays), 4),
                min_confidence=settings.policy.min_confidence, serve=run.serve, paced=True))
            log.info("live row", extra=rows[-1].row())
    return rows


MIX_PERCENTILES = (10, 30, 50, 70, 90)


def _mixed(offline: _Offline, strategy: str, delays: Sequence[float]) -> float:
    """The mean offline hit ratio over the measured delays' ``MIX_PERCENTILES``."""
    if not delays:
        return float("nan")
    ratios = [offline.hit_ratio(strategy, round(percentile(delays, q)))
              for q in MIX_PERCENTILES]
    return sum(ratios) / len(ratios)


class _AtPace:
    """One pace's offline side, built when first needed: the events as serve receives
    them (``appcache.at_pace``: each ``ts`` the application's send time, not the
    trace's), the LSTM trained on them, and the §5 replays of them.

    Serve's model learns from the stream it serves (the trainer reads the same topic),
    so its inter-arrival gaps, a model feature, are the live ones. Trained on the
    trace's own timestamps, the model met other gaps live: on cloudphysics_vm (gaps of
    ~130-240 ms, sent at 2,000/s) it named 24% fewer warms than offline, and its live
    hit ratio fell 0.07 below the offline one at the same delay.
    """

    def __init__(self, settings: Settings, events: Sequence[AccessEvent], opts: LiveOptions,
                 capacity: int, pace: tuple[float | None, float | None]) -> None:
        self._args = settings, events, opts, capacity, pace
        self._ready: tuple[_Offline, Artifact | None] | None = None

    def ready(self) -> tuple[_Offline, Artifact | None]:
        """The offline replays, and the LSTM when ``opts`` runs it."""
        if self._ready is None:
            from stream_warmer.bench.appcache import at_pace

            settings, events, opts, capacity, (rate, speedup) = self._args
            timed = at_pace(events, rate, speedup)
            artifact = _train_lstm(settings, timed) if "lstm" in opts.strategies else None
            self._ready = _Offline(settings, timed, capacity, opts.k, artifact), artifact
        return self._ready


def _train_lstm(settings: Settings, events: Sequence[AccessEvent]) -> Artifact:
    """Train on the first half with the trainer's own code (as a trainer round does).

    On ``model.cpu_threads`` torch threads, one when unset (not the auto of
    ``configure_torch_threads``): this process also replays the trace later, beside
    serve and the broker, and torch's default (one thread per core) on a shared 2-core
    machine made a 83k-event round take 15+ minutes, not ~1.
    """
    from stream_warmer.model.runtime import configure_torch_threads
    from stream_warmer.model.train import offline_delay
    from stream_warmer.trainer.lstm import lstm_trainer

    configure_torch_threads(settings.model.cpu_threads or 1)
    started = time.monotonic()
    candidate = lstm_trainer(settings)(events[: len(events) // 2], None,
                                       offline_delay(settings.trainer))
    log.info("bench live: lstm trained", extra={"s": round(time.monotonic() - started, 1),
                                                "events": len(events) // 2})
    return candidate.artifact


_COLUMNS = (("strategy", "{}"), ("rate", "{:g}"), ("capacity", "{}"), ("hit_ratio", "{:.4f}"),
            ("none_hit_ratio", "{:.4f}"), ("offline_hit_ratio", "{:.4f}"),
            ("uplift_ratio", "{:.3f}"), ("delay_requests", "{:g}"),
            ("delay_offline_hit_ratio", "{:.4f}"), ("delay_mix_offline_hit_ratio", "{:.4f}"),
            ("warms_per_request", "{:.3f}"),
            ("latency_p50_ms", "{:.1f}"), ("latency_p99_ms", "{:.1f}"))


def format_rows(rows: Sequence[LiveRow]) -> str:
    """A markdown table of the rows (the columns of DESIGN §8)."""
    names = ["trace", "cache"] + [c for c, _ in _COLUMNS] + ["p50 produce+serve+load ms"]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        d = r.row()
        cells = [r.trace, r.cache] + [fmt.format(d[c]) for c, fmt in _COLUMNS]
        cells.append("+".join(f"{d[f'{stage}_p50_ms']:g}" for stage in STAGES))
        if r.min_confidence:  # cut by serve's policy at a fixed score
            cells[2] = f"{r.strategy} ≥ {r.min_confidence:g}"
        if r.strategy == "lstm" and not r.paced:  # trained on the trace's timestamps
            cells[2] += " †"
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
