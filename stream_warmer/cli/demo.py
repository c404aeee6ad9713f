"""``stream-warmer demo``: the README's main command."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stream_warmer.cli.traceargs import add_traces_dir_argument
from stream_warmer.data import SAMPLE_TRACE_NAME
from stream_warmer.settings import Settings

HELP = (
    "bring up the local stack if needed, start a trainer and a warmer, replay a real "
    "trace and show live progress; stops what it started"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Trace, rate, limits."""
    parser.add_argument(
        "--trace",
        default=SAMPLE_TRACE_NAME,
        help="a trace file, or a bare name in --traces-dir (default: %(default)s, shipped)",
    )
    add_traces_dir_argument(parser)
    parser.add_argument("--rate", type=float, default=4000.0, help="events per second to replay")
    parser.add_argument("--limit", type=int, default=None, help="replay at most this many events")
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between progress lines"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many s")
    parser.add_argument("--log-dir", type=Path, default=Path(".devstack/demo"))
    parser.add_argument("--cache-frac", type=float, default=0.01,
                        help="the application's LRU holds f x the distinct keys (default 0.01)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Resolve the trace and run the demo."""
    from stream_warmer.demo import DemoOptions, run_demo
    from stream_warmer.evaluation.compare import resolve_trace

    _, trace = resolve_trace(args.trace, args.traces_dir)
    opts = DemoOptions(
        trace=trace,
        rate=args.rate,
        limit=args.limit,
        interval_s=args.interval,
        log_dir=args.log_dir,
        timeout_s=args.timeout,
        environ=dict(os.environ),
        cache_frac=args.cache_frac,
    )
    return run_demo(settings, opts)
