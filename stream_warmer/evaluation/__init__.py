"""Offline evaluation: streamed trace readers and the warm-eval protocol (DESIGN §5).

- ``traces.read_trace(path, fmt)``: ``AccessEvent`` s of a normalized, libCacheSim
  CSV or ``oracleGeneral`` trace, one at a time.
- ``warmeval.evaluate(trace, source, specs, ks, fracs)``: rows of hit ratio, warm
  precision and warms per request for every strategy x k x cache fraction.
- ``compare``: what ``stream-warmer evaluate`` runs (trace lookup, strategy names,
  the LSTM hook, table and JSON); ``plot.plot_rows``: the PNG.
"""

from __future__ import annotations

from stream_warmer.evaluation.traces import CsvLayout, StderrProgress, read_trace
from stream_warmer.evaluation.warmeval import (
    EvalRow,
    StrategySpec,
    TraceStats,
    capacity_for,
    evaluate,
    scan,
)

__all__ = [
    "CsvLayout",
    "EvalRow",
    "StderrProgress",
    "StrategySpec",
    "TraceStats",
    "capacity_for",
    "evaluate",
    "read_trace",
    "scan",
]
