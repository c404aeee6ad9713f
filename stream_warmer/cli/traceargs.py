"""Arguments shared by the commands that read a trace (``evaluate``, ``replay``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_trace_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--traces-dir``, ``--format`` and ``--tenant``: where and how traces are read."""
    parser.add_argument("--traces-dir", type=Path, default=Path("../shared/traces"),
                        help="where bare trace names are looked up (default: %(default)s)")
    parser.add_argument("--format", choices=["auto", "normalized", "csv", "oracle"],
                        default="auto", help="trace format (default: detect)")
    parser.add_argument("--tenant", default="t0",
                        help="tenant of every event for formats without one (default: t0)")
