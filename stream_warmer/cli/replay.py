"""``stream-warmer replay TRACE``: produce a trace into the access topic.

Events are keyed by tenant; each event's ``ts`` is rewritten to the wall clock at
the moment it is produced (see ``stream_warmer.replay``). Pace with ``--rate``
(events/s) or ``--speedup`` (x the trace's own time); with neither, as fast as
the broker takes them. Ctrl-C stops cleanly: the producer is flushed and the
count so far is printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from stream_warmer.cli.traceargs import add_trace_source_arguments
from stream_warmer.settings import Settings

HELP = "produce a trace into the access topic (keyed by tenant) at a rate or speed-up"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Trace, pacing, limit and topic."""
    parser.add_argument("trace", metavar="TRACE",
                        help="a trace file, or a bare name in --traces-dir (e.g. lirs_mix5)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=None, metavar="EVENTS_PER_S",
                      help="produce at this many events per second")
    pace.add_argument("--speedup", type=float, default=None, metavar="X",
                      help="follow the trace's own timestamps (ms), X times faster")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="stop after N events")
    parser.add_argument("--topic", default=None,
                        help="target topic (default: the configured access-events topic)")
    add_trace_source_arguments(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the trace; print the final count (also after Ctrl-C)."""
    import time

    from stream_warmer.errors import ConfigError
    from stream_warmer.evaluation.compare import resolve_trace
    from stream_warmer.evaluation.traces import StderrProgress, read_trace
    from stream_warmer.replay import replay

    if (args.rate is not None and args.rate <= 0) or (args.speedup is not None
                                                       and args.speedup <= 0):
        msg = "--rate and --speedup must be > 0"
        raise ConfigError(msg)
    if args.limit is not None and args.limit < 0:
        msg = "--limit must be >= 0"
        raise ConfigError(msg)
    _, path = resolve_trace(args.trace, args.traces_dir)
    topic = args.topic or settings.topics.access_events
    stopping = threading.Event()
    previous = signal.signal(signal.SIGINT, _on_sigint(stopping))
    progress = StderrProgress(f"replay -> {topic}")
    start = time.monotonic()
    try:
        count = replay(read_trace(path, args.format, tenant=args.tenant),
                       settings.kafka.client_config(), topic, rate=args.rate,
                       limit=args.limit, on_progress=progress, speedup=args.speedup,
                       stop=stopping.is_set)
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    elapsed = time.monotonic() - start
    how = "interrupted after" if stopping.is_set() else "produced"
    print(f"{how} {count} events to {topic} in {elapsed:.1f} s "
          f"({count / max(elapsed, 1e-9):,.0f} events/s)")
    return 130 if stopping.is_set() else 0


def _on_sigint(stopping: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            sys.exit(130)  # a second Ctrl-C gives up on the flush
        stopping.set()

    return handler
