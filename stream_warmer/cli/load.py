"""``stream-warmer load``: one loader replica; run N of them on the same queues."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING

from stream_warmer.settings import Settings

if TYPE_CHECKING:
    import redis

    from stream_warmer.load import Loader

HELP = "drain the warm queues: fetch each key from the origin and write it into the cache"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Bounded runs (for tests and benchmarks); a plain ``load`` runs until SIGTERM."""
    parser.add_argument("--max-entries", type=int, default=None,
                        help="stop after popping this many queue entries")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds with nothing to do")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Resolve the origin (a ``ConfigError`` before anything connects), open the queue
    and cache clients, serve ``/metrics`` and ``/healthz``, load until SIGTERM/SIGINT,
    then finish the fetches in flight and exit 0."""
    from stream_warmer.load import Loader, LoaderMetrics, RedisCache, resolve_origin
    from stream_warmer.serve.sinks import redis_client

    s = settings
    origin = resolve_origin(s.loader)
    stop = threading.Event()
    with ExitStack() as stack:
        queue_client = redis_client(s.redis)
        stack.callback(queue_client.close)
        cache_client = _cache_client(s)
        stack.callback(cache_client.close)
        cache = RedisCache(cache_client, s.loader.cache_key_format, s.loader.cache_ttl_s)
        loader = stack.enter_context(Loader(
            queue_client, s.loader, s.redis.key_prefix, cache, origin, metrics=LoaderMetrics(),
            # a BLPOP must end before the client's socket timeout does
            max_block_s=s.redis.socket_timeout_s / 2, backoff_max_s=s.redis.retry_backoff_max_s))
        port = _serve_metrics(stack, s, loader)
        _install_signals(stack, stop, loader)
        log.info("loading", extra={"prefix": s.redis.key_prefix, "origin": s.loader.origin,
                                   "concurrency": s.loader.concurrency, "metrics_port": port})
        stats = loader.run(stop, max_entries=args.max_entries, idle_timeout_s=args.idle_timeout)
    log.info("loader stopped", extra=stats.summary())
    return 0


def _cache_client(settings: Settings) -> redis.Redis:
    """The cache's client: the queue client's timeouts, the cache's URL and password."""
    from stream_warmer.serve.sinks import redis_client

    conf = settings.redis.model_copy(update={
        "url": settings.loader.cache_url, "password": settings.loader.cache_password})
    return redis_client(conf)


def _serve_metrics(stack: ExitStack, settings: Settings, loader: Loader) -> int | None:
    if not settings.metrics.enabled:
        return None
    from stream_warmer.serve.metrics import MetricsServer

    m = settings.metrics
    server = stack.enter_context(MetricsServer(loader.metrics.registry, loader.healthy,
                                                 m.host, m.port))
    return server.port


def _install_signals(stack: ExitStack, stop: threading.Event, loader: Loader) -> None:
    """SIGTERM/SIGINT set ``stop``; the old handlers come back on exit (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(_signum: int, _frame: object) -> None:
        stop.set()
        loader.wake()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.signal(sig, handler)
        stack.callback(signal.signal, sig, previous)
