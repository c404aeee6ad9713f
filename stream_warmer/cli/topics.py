"""``stream-warmer topics create|list``."""

from __future__ import annotations

import argparse

from stream_warmer.settings import Settings

HELP = "create every topic idempotently (model-updates compacted) and report what exists"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``create`` or ``list``."""
    parser.add_argument("action", choices=["create", "list"], nargs="?", default="create")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Create (or just list) the topics and print one line per topic."""
    from stream_warmer.topics import create_topics, describe_topics, topic_specs

    specs = topic_specs(settings.topics)
    if args.action == "create":
        created = create_topics(settings.kafka, settings.topics, args.timeout)
    else:
        created = {}
    existing = describe_topics(settings.kafka, [s.name for s in specs], args.timeout)
    for spec in specs:
        parts = existing.get(spec.name)
        state = created.get(spec.name, "exists" if parts is not None else "missing")
        cfg = ",".join(f"{k}={v}" for k, v in spec.config.items())
        print(f"{spec.name:<28} {state:<8} partitions={parts if parts is not None else '-'} {cfg}")
    return 0 if all(s.name in existing for s in specs) else 1
