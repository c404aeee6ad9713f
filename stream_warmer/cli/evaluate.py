"""``stream-warmer evaluate TRACE [TRACE...]``: the warm-eval protocol (DESIGN §5).

``--delay L[,L...]`` (or ``--delay-ms MS[,MS...] --rate R``) adds the delay-aware
variant of DESIGN §8: a warm lands only after L more requests; one row per delay.
``--max-events N`` runs the protocol on each trace's first N events. Every row
carries its strategy's ``train_s`` and ``replay_s``; the shared seconds (counting
pass, trace reads) go to stderr. With ``lstm``, torch's CPU threads are
``model.cpu_threads`` while it trains (``configure_torch_threads``: 0 = the cores this
process may use; two evaluations side by side should each set
``STREAM_WARMER_MODEL__CPU_THREADS`` to their share) and ``model.infer_threads`` while
it replays, as serve runs it.
"""

from __future__ import annotations

import argparse
import math
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
                        "markov1 (unbounded, as REFERENCE.md), nextkey, pg and mithril (the "
                        "published peers of PEERS.md), lstm "
                        "(default: %(default)s)")
    parser.add_argument("--cache-frac", default="0.01,0.1",
                        help="cache capacity as fractions of the distinct (tenant,key) pairs")
    parser.add_argument("--k", default="1,4", help="keys warmed per request (comma-separated)")
    parser.add_argument("--delay", default=None, metavar="L[,L...]",
                        help="apply each warm only after L more requests of the whole stream "
                        "(DESIGN §8); one row per L (default: 0, the protocol of §5)")
    parser.add_argument("--delay-ms", default=None, metavar="MS[,MS...]",
                        help="the delay as a latency, turned into L = ceil(MS x RATE / 1000) "
                        "requests (needs --rate; not with --delay)")
    parser.add_argument("--rate", type=float, default=None, metavar="EVENTS_PER_S",
                        help="the replay rate that --delay-ms is converted at")
    parser.add_argument("--warm-rate", default=None, metavar="W[,W...]",
                        help="iso-warm rows too: each strategy's cache held at W effective "
                        "warms per request by one online threshold on the scores it names "
                        "its warms with (the same controller for all; it can raise only a "
                        "strategy's that has a confidence floor to give up, the lstm's); "
                        "the best hit ratio at each W is starred")
    parser.add_argument("--threshold", default=None, metavar="T[,T...]",
                        help="frontier rows too: each strategy's cache takes, all replay "
                        "long, the named warms scoring at least T (a fixed threshold; the "
                        "lstm's trained one is given up, as for --warm-rate), so the rows "
                        "of a T grid trace its hit ratio against warms per request; with "
                        "model.presence_filter each T's cache picks with a presence shadow "
                        "of its own from one more run of the model")
    parser.add_argument("--max-events", type=int, default=None, metavar="N",
                        help="evaluate only each trace's first N events (the halves of "
                        "DESIGN §5 are of these N; the row's trace is named NAME[:N])")
    add_trace_source_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress lines on stderr (default: when stderr is a terminal)")


def _numbers(text: str, kind: type[int] | type[float], what: str,
             allow_zero: bool = False) -> list[float]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        msg = f"--{what} must be comma-separated numbers, got {text!r}"
        raise ConfigError(msg) from exc
    if not values or not all(math.isfinite(v) and (v > 0 or (allow_zero and v == 0))
                             for v in values):
        msg = f"--{what} needs {'non-negative' if allow_zero else 'positive'} values, got {text!r}"
        raise ConfigError(msg)
    return values


def delays_of(delay: str | None, delay_ms: str | None, rate: float | None) -> list[int]:
    """The delays in requests asked for by ``--delay`` or ``--delay-ms`` with ``--rate``."""
    from stream_warmer.evaluation.delay import delay_requests

    if delay is not None and delay_ms is not None:
        msg = "give --delay (requests) or --delay-ms (with --rate), not both"
        raise ConfigError(msg)
    if delay_ms is None:
        if rate is not None:
            msg = "--rate only converts --delay-ms; it needs --delay-ms"
            raise ConfigError(msg)
        values = _numbers(delay or "0", int, "delay", allow_zero=True)
        return list(dict.fromkeys(int(v) for v in values))
    if rate is None or not math.isfinite(rate) or rate <= 0:
        msg = f"--delay-ms needs --rate EVENTS_PER_S > 0 to turn ms into requests, got {rate}"
        raise ConfigError(msg)
    latencies = _numbers(delay_ms, float, "delay-ms", allow_zero=True)
    return list(dict.fromkeys(delay_requests(ms, rate) for ms in latencies))


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
    from stream_warmer.evaluation.warmeval import ReplayTimes

    strategies = parse_strategies(args.strategies)
    fracs = _numbers(args.cache_frac, float, "cache-frac")
    if any(f > 1 for f in fracs):
        msg = f"--cache-frac values must be in (0, 1], got {args.cache_frac!r}"
        raise ConfigError(msg)
    ks = [int(k) for k in _numbers(args.k, int, "k")]
    delays = delays_of(args.delay, args.delay_ms, args.rate)
    warm_rates = [] if args.warm_rate is None else _numbers(args.warm_rate, float, "warm-rate")
    thresholds = ([] if args.threshold is None
                  else _numbers(args.threshold, float, "threshold", allow_zero=True))
    if any(t > 1 for t in thresholds):
        msg = f"--threshold values are scores, in [0, 1], got {args.threshold!r}"
        raise ConfigError(msg)
    if args.max_events is not None and args.max_events < 2:
        msg = f"--max-events needs at least 2 events (a training and a counted half), " \
              f"got {args.max_events}"
        raise ConfigError(msg)
    if "lstm" in strategies:  # before any torch work (the lstm training)
        from stream_warmer.model.runtime import configure_torch_threads

        threads = configure_torch_threads(settings.model.cpu_threads)
        print(f"# torch cpu threads: {threads} for training, "
              f"{settings.model.infer_threads or threads} in the replay", file=sys.stderr)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    rows = []
    for trace in args.traces:
        name, path = resolve_trace(trace, args.traces_dir)
        if args.max_events is not None:
            name = f"{name}[:{args.max_events}]"
        source = TraceSource(name, path, args.format, args.tenant, max_events=args.max_events)
        start = time.monotonic()
        times = ReplayTimes()
        rows += evaluate_trace(source, strategies, ks, fracs, settings, show_progress=show,
                               delays=delays, times=times, warm_rates=warm_rates,
                               thresholds=thresholds)
        print(f"# {name}: {time.monotonic() - start:.1f} s (scan {times.scan_s:.1f} s, "
              f"trace reads in the replay {times.read_s:.1f} s; each strategy's train and "
              "replay seconds are in its rows)", file=sys.stderr)
    print(format_table(rows))
    if args.json is not None:
        write_json(rows, args.json)
    if args.plot is not None:
        from stream_warmer.evaluation.plot import plot_rows

        plot_rows(rows, args.plot)
    return 0
