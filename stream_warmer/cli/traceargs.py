"""Arguments shared by the commands that read a trace (``evaluate``, ``replay``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stream_warmer.data import TRACES_DIR


def add_traces_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--traces-dir``: where bare trace names are looked up (the shipped traces by default).

    A TRACE argument that names an existing file (relative to the current directory)
    is read as it is; only a bare name is looked up here.
    """
    parser.add_argument("--traces-dir", type=Path, default=TRACES_DIR,
                        help="where bare trace names are looked up "
                             "(default: the traces shipped in the package)")


def add_trace_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--traces-dir``, ``--format`` and ``--tenant``: where and how traces are read."""
    add_traces_dir_argument(parser)
    parser.add_argument("--format", choices=["auto", "normalized", "csv", "oracle"],
                        default="auto", help="trace format (default: detect)")
    parser.add_argument("--tenant", default="t0",
                        help="tenant of every event for formats without one (default: t0)")
