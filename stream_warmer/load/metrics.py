"""Prometheus metrics of one loader (names prefixed ``stream_warmer_loader_``).

Each loader owns its registry, so tests and benchmarks may build several in one
process; ``render`` is what ``/metrics`` serves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30)

# counter name -> help; the same names are the fields of ``LoaderStats``
COUNTERS: dict[str, str] = {
    "popped": "Entries popped from the warm queues",
    "loaded": "Entries fetched from the origin and written into the cache",
    "skipped_present": "Entries skipped because the cache already held the key",
    "dropped_expired": "Entries dropped because their expires_at had passed",
    "origin_missing": "Entries the origin had no value for (not retried)",
    "origin_errors": "Origin fetch attempts that raised",
    "failed": "Entries dropped after their last origin attempt failed",
    "abandoned": "Entries given up at shutdown (waiting for a retry or for the cache)",
    "cache_errors": "Cache writes that failed for another reason than an outage",
}


class LoaderMetrics:
    """Every metric the loader exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        p = "stream_warmer_loader_"
        self.counters = {name: Counter(p + name, text, registry=r)
                         for name, text in COUNTERS.items()}
        self.origin_seconds = Histogram(p + "origin_fetch_seconds",
                                        "Duration of one origin fetch attempt",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.pop_to_cache = Histogram(p + "pop_to_cache_seconds",
                                      "Entry popped from its queue to value written in the cache",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(p + "in_flight", "Origin fetches (and their writes) running",
                               registry=r)
        self.held = Gauge(p + "held_entries",
                          "Entries popped and not finished (running, ready or awaiting a retry)",
                          registry=r)
        self.redis_up = Gauge(p + "redis_up", "1 when that Redis answers", ["redis"], registry=r)
        self.redis_up.labels("queue").set(1)
        self.redis_up.labels("cache").set(1)

    def render(self) -> bytes:
        """The text exposition of this registry."""
        return bytes(generate_latest(self.registry))


@dataclass
class LoaderStats:
    """What the loader did so far (the same names as its counters)."""

    popped: int = 0
    loaded: int = 0
    skipped_present: int = 0
    dropped_expired: int = 0
    origin_missing: int = 0
    origin_errors: int = 0
    failed: int = 0
    abandoned: int = 0
    cache_errors: int = 0

    def summary(self) -> dict[str, int]:
        """For the log line at the end of a run."""
        return asdict(self)
