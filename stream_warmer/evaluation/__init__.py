"""Offline evaluation: streamed trace readers and the warm-eval protocol (DESIGN §5).

- ``traces.read_trace(path, fmt)``: ``AccessEvent`` s of a normalized, libCacheSim
  CSV or ``oracleGeneral`` trace, one at a time.
- ``warmeval.evaluate(trace, source, specs, ks, fracs, delays=...)``: rows of hit
  ratio, warm precision and warms per request for every strategy x k x cache
  fraction x delay (DESIGN §8: a warm applied L requests late; 0 is §5);
  ``warmeval.evaluate_events(events, spec, k, capacity, delay=...)``: one row for an
  in-memory list of events and a given C (for benchmarks);
  ``delay.delay_requests(latency_ms, rate)``: a latency as L.
- ``compare``: what ``stream-warmer evaluate`` runs (trace lookup, strategy names,
  the LSTM hook, table and JSON); ``plot.plot_rows``: the PNG.
"""

from __future__ import annotations

from stream_warmer.evaluation.delay import delay_requests
from stream_warmer.evaluation.traces import CsvLayout, StderrProgress, read_trace
from stream_warmer.evaluation.warmeval import (
    EvalRow,
    StrategySpec,
    TraceStats,
    capacity_for,
    evaluate,
    evaluate_events,
    scan,
)

__all__ = [
    "CsvLayout",
    "EvalRow",
    "StderrProgress",
    "StrategySpec",
    "TraceStats",
    "capacity_for",
    "delay_requests",
    "evaluate",
    "evaluate_events",
    "read_trace",
    "scan",
]
