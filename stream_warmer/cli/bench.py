"""``stream-warmer bench pipeline|inference``: print a table, optionally write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from types import ModuleType

from stream_warmer.settings import Settings

HELP = "benchmarks: serve pipeline throughput and latency, model inference"


def _inference() -> ModuleType | None:
    # ``bench inference`` is another module; it may not exist in every checkout
    try:
        return importlib.import_module("stream_warmer.bench.inference")
    except ImportError:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pipeline`` and ``inference`` subcommands."""
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    pipe = sub.add_parser("pipeline", help="serve events/s vs a bare consumer; latency p50/p99")
    pipe.add_argument("--trace", type=Path, required=True,
                      help="normalized trace (ts,tenant,key,size CSV, gzip ok)")
    pipe.add_argument("--events", type=int, default=1_000_000, help="events to preload")
    pipe.add_argument("--strategy", default="markov",
                      choices=["none", "popularity", "markov", "nextkey"])
    pipe.add_argument("--latency-seconds", type=float, default=20.0,
                      help="how long to replay at half the measured throughput")
    pipe.add_argument("--latency-warmup-seconds", type=float, default=20.0,
                      help="replay at that rate this long first; reported apart, not in p99")
    pipe.add_argument("--json", type=Path, default=None, help="write the result here")
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
    return _pipeline(args, settings)


def _pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from stream_warmer.bench.pipeline import run_bench

    result = run_bench(settings, args.trace, args.events, args.strategy, args.latency_seconds,
                       latency_warmup_s=args.latency_warmup_seconds)
    row = result.row()
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    goals = result.ratio >= 0.5 and result.latency_p99_ms <= 50.0
    print(f"goals (ratio >= 0.5, p99 <= 50 ms): {'met' if goals else 'NOT met'}")
    return 0
