"""The ``stream-warmer`` command line: settings are built here, once, and passed down.

Each subcommand lives in its own small module of this package exposing ``HELP``,
``add_arguments(parser)`` and ``run(args, settings) -> int``; heavy imports (torch,
the Kafka client) happen inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from stream_warmer import __version__
from stream_warmer.errors import StreamWarmerError
from stream_warmer.logs import setup_logging
from stream_warmer.settings import load_settings

# name -> module under stream_warmer.cli; the order is the order in --help.
COMMANDS: tuple[str, ...] = (
    "demo", "topics", "serve", "load", "train", "model", "replay", "evaluate", "bench",
)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"stream_warmer.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="stream-warmer",
        description="Predictive cache warmer: Kafka access events in, warm commands out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML settings file (default: config/stream-warmer.toml if present); "
        "STREAM_WARMER_* environment variables override it",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _module(name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-warmer`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config, dict(os.environ))
    except StreamWarmerError as exc:
        print(f"stream-warmer: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.metrics.log_level, settings.metrics.log_format)
    try:
        return int(args._module.run(args, settings))
    except StreamWarmerError as exc:
        print(f"stream-warmer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
