"""``stream-warmer evaluate TRACE [TRACE...]``: the warm-eval protocol (DESIGN §5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_warmer.cli.traceargs import add_trace_source_arguments
from stream_warmer.errors import ConfigError
from stream_warmer.settings import Settings

HELP = ("replay traces through an LRU cache with each strategy warming it; "
        "print hit ratio, warm precision and warms per request (DESIGN §5)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Traces, strategies, cache fractions, k, and where to write JSON and the plot."""
    parser.add_argument("traces", nargs="+", metavar="TRACE",
                        help="a trace file, or a bare name in --traces-dir (e.g. lirs_mix5)")
    parser.add_argument("--strategies", default="none,markov1,nextkey",
                        help="comma-separated: none, popularity, markov (configured bounds), "
                        "markov1 (unbounded, as REFERENCE.md), nextkey, lstm "
                        "(default: %(default)s)")
    parser.add_argument("--cache-frac", default="0.01,0.1",
                        help="cache capacity as fractions of the distinct (tenant,key) pairs")
    parser.add_argument("--k", default="1,4", help="keys warmed per request (comma-separated)")
    add_trace_source_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress lines on stderr (default: when stderr is a terminal)")


def _numbers(text: str, kind: type[int] | type[float], what: str) -> list[float]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        msg = f"--{what} must be comma-separated numbers, got {text!r}"
        raise ConfigError(msg) from exc
    if not values or any(v <= 0 for v in values):
        msg = f"--{what} needs positive values, got {text!r}"
        raise ConfigError(msg)
    return values


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate every trace, print the table, write JSON and the plot if asked."""
    import time

    from stream_warmer.evaluation.compare import (
        TraceSource,
        evaluate_trace,
        format_table,
        parse_strategies,
        resolve_trace,
        write_json,
    )

    strategies = parse_strategies(args.strategies)
    fracs = _numbers(args.cache_frac, float, "cache-frac")
    if any(f > 1 for f in fracs):
        msg = f"--cache-frac values must be in (0, 1], got {args.cache_frac!r}"
        raise ConfigError(msg)
    ks = [int(k) for k in _numbers(args.k, int, "k")]
    show = sys.stderr.isatty() if args.progress is None else args.progress
    rows = []
    for trace in args.traces:
        name, path = resolve_trace(trace, args.traces_dir)
        source = TraceSource(name, path, args.format, args.tenant)
        start = time.monotonic()
        rows += evaluate_trace(source, strategies, ks, fracs, settings, show_progress=show)
        print(f"# {name}: {time.monotonic() - start:.1f} s", file=sys.stderr)
    print(format_table(rows))
    if args.json is not None:
        write_json(rows, args.json)
    if args.plot is not None:
        from stream_warmer.evaluation.plot import plot_rows

        plot_rows(rows, args.plot)
    return 0
