"""Prometheus metrics of one serve app, and the ``/metrics`` + ``/healthz`` endpoint that
serve, the loader and the trainer share.

Each app owns its registry (tests build several apps in one process). The hot loop
adds to plain ints: the engine's own counts (policy drops, windows evicted, useful
warms, precision overflow) are read at each scrape by ``EngineCounts``, a collector
on the same registry, and the app sets its gauges once per poll batch, so the
per-event cost of metrics is nil.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class EngineCounts(Collector):
    """The serve engine's running counts as counters, read at each scrape (``engine`` is
    set once the app has built it; before that they read 0)."""

    def __init__(self) -> None:
        self.engine: Any = None  # serve.engine.WarmEngine (it imports this module)

    def collect(self) -> Iterable[Metric]:
        """Counter families from the engine's plain ints (copied: a scrape runs on the
        metrics thread while the loop adds to them)."""
        p, engine = "stream_warmer_", self.engine
        dropped = CounterMetricFamily(p + "warm_dropped", "Predictions not warmed",
                                      labels=["reason"])
        evicted = CounterMetricFamily(p + "tenants_evicted", "Tenant windows dropped",
                                      labels=["reason"])
        if engine is not None:
            for reason, count in dict(engine.policy.drops).items():
                dropped.add_metric([reason], count)
            for reason, count in dict(engine.windows.evicted).items():
                evicted.add_metric([reason], count)
        precision = engine.precision if engine is not None else None
        yield dropped
        yield evicted
        yield CounterMetricFamily(
            p + "coalesced_events", "Events never asked about: a tenant had more than "
            "batch.max_events_per_tenant in one micro-batch",
            value=engine.batcher.coalesced if engine is not None else 0)
        yield CounterMetricFamily(p + "useful_warms", "Warms requested within the horizon",
                                  value=precision.useful if precision is not None else 0)
        yield CounterMetricFamily(
            p + "precision_overflowed", "Outstanding warms dropped unresolved because the "
            "precision tracker was full",
            value=precision.overflowed if precision is not None else 0)


class ServeMetrics:
    """Every metric the serve loop exports (names prefixed ``stream_warmer_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = "stream_warmer_"
        self.events = Counter(p + "events", "Access events consumed", registry=r)
        self.bad_events = Counter(p + "bad_events", "Bad events sent to the DLQ", ["reason"],
                                  registry=r)
        self.produce_rejected = Counter(
            p + "produce_rejected", "Records the producer or broker refused for themselves "
            "(outcome: replaced by a minimal dead letter, or dropped)", ["topic", "outcome"],
            registry=r)
        self.rehandled = Counter(p + "rehandled_events",
                                 "Events consumed again after Redis was unavailable", registry=r)
        self.lag = Gauge(p + "partition_lag", "High watermark minus next offset", ["partition"],
                         registry=r)
        self.batch_size = Histogram(p + "batch_tenants", "Tenants per micro-batch",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_events = Histogram(p + "batch_events", "Events a micro-batch asks the "
                                      "strategy about (per_event: each tenant's newest and "
                                      "its earlier ones; else one per tenant)",
                                      buckets=_BATCH_BUCKETS, registry=r)
        self.inference = Histogram(p + "inference_seconds", "Strategy predict time per batch",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.event_to_warm = Histogram(p + "event_to_warm_seconds",
                                       "Event ts to warm command acknowledged by Redis",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.warm_delay = Gauge(p + "warm_delay_requests", "Median event -> warm latency "
                                "times events consumed per second (serve/delay.py)", registry=r)
        self.warm_commands = Counter(p + "warm_commands", "Warm commands written", registry=r)
        self.expired_warms = Counter(p + "expired_warms", "Warms not requested in the horizon",
                                     registry=r)
        self.precision = Gauge(p + "warm_precision", "Useful / resolved warms", registry=r)
        self.tenants_held = Gauge(p + "tenants_held", "Tenant windows in memory", registry=r)
        self.redis_up = Gauge(p + "redis_up", "1 when Redis answers", registry=r)
        self.paused = Gauge(p + "paused", "1 while partitions are paused (Redis down)", registry=r)
        self.checkpoints = Counter(p + "checkpoints", "Offset commits", ["trigger"], registry=r)
        self.checkpoints_skipped = Counter(
            p + "checkpoints_skipped", "Checkpoints that committed nothing: the producer had "
            "not delivered every warm command and dead letter", ["trigger"], registry=r)
        self.checkpoint_flush = Histogram(p + "checkpoint_flush_seconds",
                                          "Time a checkpoint waited for the producer",
                                          ["trigger"], buckets=_LATENCY_BUCKETS, registry=r)
        self.bounded_size = Gauge(p + "bounded_entries", "Entries held by a bounded in-process "
                                  "map (see bounded_capacity)", ["map"], registry=r)
        self.bounded_capacity = Gauge(p + "bounded_capacity", "The bound of each in-process map",
                                      ["map"], registry=r)
        self.engine_counts = EngineCounts()
        r.register(self.engine_counts)
        self.rebalances = Counter(p + "rebalance_partitions", "Partitions assigned, revoked "
                                  "or lost by rebalances", ["event"], registry=r)
        self.model_version = Gauge(p + "model_version_info", "Model serving now",
                                   ["strategy", "version"], registry=r)
        self.swaps = Counter(p + "strategy_swaps", "Strategies hot-swapped in", registry=r)
        self.model_precision = Gauge(p + "model_precision_info",
                                     "Precision the model is served in", ["precision"], registry=r)
        self.precision_agreement = Gauge(
            p + "model_precision_topk_agreement",
            "Share of rows where the candidate precision kept fp32's top-k", registry=r)
        self.table_bytes = Gauge(p + "successor_table_bytes", "Bytes the serving strategy's "
                                 "successor tables are charged, all tenants (markov, lstm)",
                                 registry=r)
        self.table_budget = Gauge(p + "successor_table_budget_bytes", "Their memory budget "
                                  "(strategy.markov_table_mb)", registry=r)
        self.table_rows = Gauge(p + "successor_table_rows", "Rows (keys) in them", registry=r)
        # a gauge, not a counter: the tables' own count since they were built (an LSTM
        # hot swap keeps its tracker's tables, and so the count; markov's start anew)
        self.table_evicted = Gauge(p + "successor_table_evicted_rows", "Rows evicted from "
                                   "them by their budget or per-tenant cap since they were "
                                   "built", registry=r)
        self._precision: str | None = None
        self.redis_up.set(1)

    def set_model(self, strategy: str, version: str) -> None:
        """Point the model-version info at what serves now."""
        self.model_version.clear()
        self.model_version.labels(strategy, version).set(1)

    def set_precision(self, precision: str, agreement: float) -> None:
        """The served precision and the candidate's top-k agreement so far."""
        if precision != self._precision:
            self._precision = precision
            self.model_precision.clear()
            self.model_precision.labels(precision).set(1)
        self.precision_agreement.set(agreement)

    def set_tables(self, stats: tuple[int, int, int, int]) -> None:
        """The serving strategy's successor tables: (bytes, rows, evictions, budget)."""
        size, rows, evictions, budget = stats
        self.table_bytes.set(size)
        self.table_rows.set(rows)
        self.table_budget.set(budget)
        self.table_evicted.set(evictions)

    def include(self, collectors: Iterable[Collector]) -> None:
        """Show metrics kept elsewhere (the model watcher's) on this app's ``/metrics``."""
        for collector in collectors:
            self.registry.register(collector)

    def render(self) -> bytes:
        """The text exposition of this registry."""
        return bytes(generate_latest(self.registry))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args: Any) -> None:  # keep request lines out of the logs
        return


class MetricsServer:
    """``/healthz`` and, on every other path, ``/metrics``: prometheus_client's WSGI app
    over one registry, on its threading WSGI server, in a background thread; ``port=0``
    picks a free one. Serve, the loader and the trainer each run one."""

    def __init__(self, registry: CollectorRegistry, healthy: Callable[[], bool], host: str,
                 port: int) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if str(environ.get("PATH_INFO", "")).startswith("/healthz"):
                ok = healthy()
                start_response("200 OK" if ok else "503 Service Unavailable",
                               [("Content-Type", "text/plain")])
                return [b"ok\n" if ok else b"unhealthy\n"]
            body: Iterable[bytes] = metrics_app(environ, start_response)
            return body

        self._server = make_server(host, port, app, ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
