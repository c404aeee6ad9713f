"""``stream-warmer load``: drain the per-tenant warm queues into the cache.

A :class:`Loader` pops each tenant's queue highest score first (round robin over
tenants), drops expired entries, skips keys the :class:`Cache` already holds, fetches
the rest from the origin (bounded concurrency, a global rate limit, retries with
backoff) and writes them into the cache. The queue layout is
:mod:`stream_warmer.warmqueue`; the process around it is :mod:`stream_warmer.cli.load`.
"""

from __future__ import annotations

from stream_warmer.load.cache import Cache, RedisCache
from stream_warmer.load.loader import Loader
from stream_warmer.load.metrics import LoaderMetrics, LoaderStats
from stream_warmer.load.origin import Origin, SimulatedOrigin, resolve_origin
from stream_warmer.load.outage import UnavailableError

__all__ = [
    "Cache",
    "Loader",
    "LoaderMetrics",
    "LoaderStats",
    "Origin",
    "RedisCache",
    "SimulatedOrigin",
    "UnavailableError",
    "resolve_origin",
]
