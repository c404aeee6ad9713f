"""``stream-warmer bench pipeline|live|inference``: print a table, optionally write JSON."""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
from pathlib import Path
from types import ModuleType

from stream_warmer.cli.traceargs import add_traces_dir_argument
from stream_warmer.settings import Settings

HELP = ("benchmarks: serve pipeline throughput and latency, the live closed loop, "
        "model inference")


def _inference() -> ModuleType | None:
    # ``bench inference`` is another module; it may not exist in every checkout
    try:
        return importlib.import_module("stream_warmer.bench.inference")
    except ImportError:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pipeline``, ``live`` and ``inference`` subcommands."""
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    pipe = sub.add_parser("pipeline", help="serve events/s vs a bare consumer; latency p50/p99")
    pipe.add_argument("--trace", type=Path, required=True,
                      help="normalized trace (ts,tenant,key,size CSV, gzip ok)")
    pipe.add_argument("--events", type=int, default=1_000_000, help="events to preload")
    pipe.add_argument("--strategy", type=_pipeline_strategies, default=("markov",),
                      metavar="S[,S...]",
                      help="none, popularity, markov, nextkey or lstm; several "
                      "(markov,lstm) share the loaded topic and the ceiling, one row each "
                      "(default: markov)")
    pipe.add_argument("--train-events", type=int, default=None, metavar="N",
                      help="lstm: train on the trace's first N events (default: "
                      "trainer.buffer_events); every strategy of the run is then measured "
                      "on the events after them")
    pipe.add_argument("--swap-timeout", type=float, default=120.0, metavar="S",
                      help="lstm: fail if serve does not serve the published model "
                      "within this many seconds")
    pipe.add_argument("--latency-seconds", type=float, default=20.0,
                      help="how long to replay at half the measured throughput")
    pipe.add_argument("--latency-warmup-seconds", type=float, default=20.0,
                      help="replay at that rate this long first; reported apart, not in p99")
    pipe.add_argument("--json", type=Path, default=None,
                      help="write the result here (one strategy: its row; several: a list)")
    _live_arguments(sub.add_parser(
        "live", help="the closed loop: real serve + loader, the trace replayed as an app"))
    inference = _inference()
    inf = sub.add_parser("inference", help="model sequences/s per batch size")
    if inference is not None:
        inference.add_arguments(inf)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch to the chosen benchmark."""
    if args.bench == "inference":
        inference = _inference()
        if inference is None:
            print("bench inference: stream_warmer.bench.inference is not available")
            return 1
        return int(inference.run(args, settings))
    if args.bench == "live":
        return _live(args, settings)
    return _pipeline(args, settings)


def _pipeline_strategies(text: str) -> tuple[str, ...]:
    from stream_warmer.bench.pipeline import parse_strategies

    try:
        return parse_strategies(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _live_arguments(live: argparse.ArgumentParser) -> None:
    live.add_argument("--trace", required=True,
                      help="a trace file, or a bare name in --traces-dir")
    add_traces_dir_argument(live)
    live.add_argument("--limit", type=int, default=None, help="the first N events only")
    live.add_argument("--rate", type=_floats, default=(), metavar="R[,R...]",
                      help="replay at these events/s (one run each)")
    live.add_argument("--speedup", type=_floats, default=(), metavar="X[,X...]",
                      help="replay at X times the trace's own timestamps (ms)")
    live.add_argument("--strategies", default="markov",
                      help="comma-separated strategies serve runs (default: markov)")
    live.add_argument("--k", type=int, default=None, help="keys per prediction "
                      "(default: strategy.k from the settings)")
    live.add_argument("--cache", choices=["lru", "redis"], default="lru",
                      help="lru: exact object-count LRU in this process, filled by the "
                      "loader's code; redis: a real Redis cache and a `load` process")
    live.add_argument("--capacity", type=int, default=None, help="cache objects (C)")
    live.add_argument("--cache-frac", type=float, default=0.01,
                      help="C = f x distinct (tenant, key) pairs when --capacity is absent")
    live.add_argument("--app-linger-ms", type=float, default=5.0,
                      help="linger.ms of the application's own producer of access events "
                      "(default 5: the Kafka clients' default; it is the produce stage)")
    live.add_argument("--json", type=Path, default=None, help="write the rows here")
    live.add_argument("--plot", type=Path, default=None, help="PNG: uplift ratio vs rate")
    live.add_argument("--log-dir", type=Path, default=Path(".devstack/bench-live"))


def _live(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from stream_warmer.bench.live import LiveOptions, format_rows, plot_live, run_live
    from stream_warmer.errors import ConfigError
    from stream_warmer.evaluation.compare import resolve_trace
    from stream_warmer.evaluation.traces import read_trace

    if not args.rate and not args.speedup:
        msg = "bench live needs --rate and/or --speedup"
        raise ConfigError(msg)
    name, path = resolve_trace(args.trace, args.traces_dir)
    events = list(itertools.islice(read_trace(path), args.limit))
    opts = LiveOptions(
        trace=name, strategies=tuple(s for s in args.strategies.split(",") if s),
        rates=args.rate, speedups=args.speedup, cache=args.cache, capacity=args.capacity,
        cache_frac=args.cache_frac, k=args.k or settings.strategy.k, log_dir=args.log_dir,
        environ=dict(os.environ), app_linger_ms=args.app_linger_ms)
    rows = run_live(settings, events, opts)
    print(format_rows(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.row() for r in rows], indent=2) + "\n")
    if args.plot is not None:
        plot_live(rows, args.plot)
    return 0


def _pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from stream_warmer.bench.pipeline import format_rows, run_benches

    strategies = tuple(args.strategy)
    results = run_benches(settings, args.trace, args.events, strategies, args.latency_seconds,
                          latency_warmup_s=args.latency_warmup_seconds,
                          train_events=args.train_events, swap_timeout_s=args.swap_timeout)
    if len(results) == 1:  # one strategy: its row, one value a line, and a JSON object
        row = results[0].row()
        width = max(len(k) for k in row)
        for key, value in row.items():
            print(f"{key:<{width}}  {value}")
        payload: object = row
    else:
        print(format_rows(results))
        payload = [r.row() for r in results]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    for result in results:
        met = "met" if result.goals_met else "NOT met"
        name = f" {result.strategy}" if len(results) > 1 else ""
        print(f"goals{name} (ratio >= 0.5, p99 <= 50 ms): {met}")
    return 0
