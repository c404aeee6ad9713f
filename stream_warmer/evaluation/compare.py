"""What ``stream-warmer evaluate`` does: resolve traces, build strategies, run, report.

Strategy names: ``none``, ``popularity``, ``nextkey``, ``markov`` (the Markov
baseline with the configured memory bounds, as ``serve`` runs it), ``markov1``
(REFERENCE.md's Markov table: the same ranking, unbounded), the published peers
``pg`` and ``mithril`` (PEERS.md; bounded by the ``strategy.pg_*`` / ``mithril_*``
settings) and ``lstm`` (``stream_warmer.strategies.lstm.fit_strategy`` trained on
the first half of the trace, then evaluated with the same protocol; trained once per
trace, each further instance, e.g. one per f for a capacity-aware strategy, comes
from its ``fresh()``).

Each row also carries its strategy's ``train_s`` and ``replay_s`` (seconds; see
``warmeval``); the counting pass and the trace reads are shared (``ReplayTimes``).
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from stream_warmer.errors import ConfigError, ModelError, TraceError
from stream_warmer.evaluation.traces import (
    CsvLayout,
    Progress,
    StderrProgress,
    TraceFormat,
    read_trace,
)
from stream_warmer.evaluation.warmeval import (
    EvalRow,
    ReplayTimes,
    StrategySpec,
    TraceStats,
    evaluate,
    scan,
)
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings
from stream_warmer.strategies import build_baseline
from stream_warmer.strategies.base import WarmingStrategy

STRATEGIES = ("none", "popularity", "markov", "markov1", "nextkey", "pg", "mithril", "lstm")
T = TypeVar("T")
_SUFFIXES = (".csv.gz", ".csv", ".oracleGeneral.bin", ".oracleGeneral", ".bin")


@dataclass(frozen=True, slots=True)
class TraceSource:
    """A trace file and how to read it; ``events()`` opens a fresh stream.

    ``max_events``: only the first this many events (the whole protocol, halves
    included, runs on that prefix); None: all.
    """

    name: str
    path: Path
    fmt: TraceFormat = "auto"
    tenant: str = "t0"
    layout: CsvLayout | None = None
    max_events: int | None = None

    def events(self, progress: Progress | None = None) -> Iterator[AccessEvent]:
        """A fresh iterator over the trace's events (the first ``max_events`` of them)."""
        events = read_trace(self.path, self.fmt, tenant=self.tenant, layout=self.layout,
                            progress=progress)
        return events if self.max_events is None else islice(events, self.max_events)


def resolve_trace(name: str, traces_dir: Path) -> tuple[str, Path]:
    """``(short name, path)`` for a path or a bare name under ``traces_dir``."""
    direct = Path(name)
    if direct.is_file():
        return _short(direct.name), direct
    for suffix in ("", *_SUFFIXES):
        candidate = traces_dir / f"{name}{suffix}"
        if candidate.is_file():
            return _short(candidate.name), candidate
    msg = f"trace {name!r} is neither a file nor a trace in {str(traces_dir)!r}"
    raise TraceError(msg)


def _short(filename: str) -> str:
    for suffix in _SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def parse_strategies(text: str) -> list[str]:
    """Comma-separated strategy names, checked against ``STRATEGIES``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in STRATEGIES]
    if bad or not names:
        msg = f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)}"
        raise ConfigError(msg)
    return list(dict.fromkeys(names))


def evaluate_trace(
    source: TraceSource,
    strategies: Sequence[str],
    ks: Sequence[int],
    fracs: Sequence[float],
    settings: Settings,
    *,
    show_progress: bool = False,
    delays: Sequence[int] = (0,),
    times: ReplayTimes | None = None,
    warm_rates: Sequence[float] = (),
    thresholds: Sequence[float] = (),
) -> list[EvalRow]:
    """All rows of one trace: a counting pass, then one replay for every strategy.

    ``delays`` (requests, DESIGN §8) give one row per delay from that same replay;
    ``warm_rates`` add the iso-warm rows and ``thresholds`` the frontier's
    (``warmeval.evaluate``).
    ``times``, when given, gets the seconds of the counting pass and of the trace
    reads during the replay (each strategy's own seconds are in its rows).
    """
    times = times if times is not None else ReplayTimes()
    started = time.perf_counter()
    stats = _with_progress(f"{source.name} scan", None, show_progress,
                           lambda p: scan(source.events(p)))
    times.scan_s += time.perf_counter() - started
    specs = [_spec(name, source, stats, settings, show_progress) for name in strategies]

    def run(progress: Progress | None) -> list[EvalRow]:
        return evaluate(source.name, lambda: source.events(progress), specs, ks, fracs,
                        stats=stats, delays=delays, times=times, warm_rates=warm_rates,
                        thresholds=thresholds)

    return _with_progress(f"{source.name} replay", stats.requests, show_progress, run)


def _with_progress(label: str, total: int | None, show: bool,
                      work: Callable[[Progress | None], T]) -> T:
    if not show:
        return work(None)
    bar = StderrProgress(label, total)
    try:
        return work(bar)
    finally:
        bar.close()


def _spec(name: str, source: TraceSource, stats: TraceStats, settings: Settings,
          show_progress: bool) -> StrategySpec:
    if name == "none":
        return StrategySpec(name, lambda: build_baseline("none", settings.strategy), ks=(1,))
    if name == "lstm":
        make = _lstm_factory(source, stats, settings)
        return StrategySpec(name, lambda: make(0), for_delay=make)
    return StrategySpec(name, lambda: build_baseline(name, settings.strategy))


def _lstm_factory(source: TraceSource, stats: TraceStats, settings: Settings
                  ) -> Callable[[int], WarmingStrategy]:
    """``make(delay)``: an lstm trained on the trace's first half for warms that land
    ``delay`` requests late (``trainer.gate_delay`` instead when that is fixed, >= 0),
    as serve's trainer trains for the delay serve measures; one training per delay."""
    try:
        lstm = importlib.import_module("stream_warmer.strategies.lstm")
    except ImportError as exc:
        msg = "the lstm strategy is not available (stream_warmer.strategies.lstm is missing)"
        raise ModelError(msg) from exc
    fit = getattr(lstm, "fit_strategy", None)
    if fit is None:
        msg = "stream_warmer.strategies.lstm has no fit_strategy(train_events, settings, delay)"
        raise ModelError(msg)

    trained: dict[int, WarmingStrategy] = {}
    fixed = settings.trainer.gate_delay

    def make(delay: int) -> WarmingStrategy:  # trains once per delay, then reuses it
        delay = fixed if fixed >= 0 else delay
        fresh = getattr(trained[delay], "fresh", None) if delay in trained else None
        if callable(fresh):
            again: WarmingStrategy = fresh()
            return again
        from stream_warmer.model.runtime import configure_torch_threads

        train = list(islice(source.events(), stats.requests // 2))
        configure_torch_threads(settings.model.cpu_threads)  # training's threads
        strategy: WarmingStrategy = fit(train, settings, delay=delay)
        configure_torch_threads(settings.model.infer_threads)  # the replay serves it
        trained[delay] = strategy
        return strategy

    return make


def format_table(rows: Sequence[EvalRow]) -> str:
    """A fixed-width table of rows, one line each.

    ``train s`` and ``replay s`` are the strategy's (all its rows of the trace
    together), repeated on each of its rows.
    """
    w = max([20, *(len(r.trace) for r in rows)])
    held = any(r.held() != "-" for r in rows)
    best = _best_at_each_rate(rows)
    sw = 11 if held else 10  # room for the star
    head = (f"{'trace':<{w}} {'f':>5} {'C':>7} {'k':>2} {'delay':>5} "
            + (f"{'W / T':>7} " if held else "") + f"{'strategy':<{sw}} "
            f"{'hit ratio':>9} {'precision':>9} {'warms/req':>9} {'train s':>8} "
            f"{'replay s':>8}")
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows):
        rate = r.held() if held else ""
        name = r.strategy + ("*" if i in best else "")
        lines.append(f"{r.trace:<{w}} {r.cache_frac:>5g} {r.capacity:>7} {r.k:>2} "
                     f"{r.delay:>5} " + (f"{rate:>7} " if held else "") + f"{name:<{sw}} "
                     f"{r.hit_ratio:>9.4f} {r.warm_precision:>9.3f} "
                     f"{r.warms_per_request:>9.3f} {r.train_s:>8.1f} {r.replay_s:>8.1f}")
    return "\n".join(lines)


def _best_at_each_rate(rows: Sequence[EvalRow]) -> set[int]:
    """Indices of the iso-warm rows with the best hit ratio of their (trace, f, k, delay,
    W) group (ties all starred)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(rows):
        if r.warm_rate is not None and not math.isnan(r.hit_ratio):
            groups.setdefault((r.trace, r.cache_frac, r.k, r.delay, r.warm_rate), []).append(i)
    return {i for members in groups.values() if len(members) > 1
            for i in members if rows[i].hit_ratio == max(rows[j].hit_ratio for j in members)}


def write_json(rows: Sequence[EvalRow], path: Path) -> None:
    """The rows as a JSON list (``nan`` written as ``null``)."""
    data = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in r.to_dict().items()} for r in rows]
    path.write_text(json.dumps(data, indent=2) + "\n")
