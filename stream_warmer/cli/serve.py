"""``stream-warmer serve``: run one replica of the warmer in the consumer group."""

from __future__ import annotations

import argparse
import logging

from stream_warmer.settings import Settings

HELP = "consume access events, predict each tenant's next keys, write warm commands"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Bounded runs (for tests and benchmarks); a plain ``serve`` runs until SIGTERM."""
    parser.add_argument("--max-messages", type=int, default=None,
                        help="stop after consuming this many records")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without a record")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the strategy named in settings and serve until stopped."""
    from stream_warmer.serve.app import ServeApp
    from stream_warmer.strategies import build_baseline

    name = settings.strategy.name
    if name == "lstm":
        # the LSTM strategy arrives by hot swap once a model exists; the fallback
        # baseline serves until then
        name = settings.strategy.fallback
        log.warning("no LSTM model loaded yet: serving the fallback", extra={"strategy": name})
    strategy = build_baseline(name, settings.strategy)
    app = ServeApp(settings, strategy)
    stats = app.run(max_messages=args.max_messages, idle_timeout_s=args.idle_timeout)
    log.info("serve finished", extra=stats.summary())
    return 0
