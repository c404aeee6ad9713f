"""``stream-warmer train``: the trainer process (retrain, gate, publish)."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from stream_warmer.settings import Settings

HELP = "learn from the access stream, retrain on a schedule, publish versions that pass the gate"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Bounded runs for tests and one-off training; a plain ``train`` runs until SIGTERM."""
    parser.add_argument(
        "--max-rounds", type=int, default=None, help="stop after this many training rounds"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="stop after this many seconds without a record (and no round running)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the store, publisher, training round and service; run until stopped."""
    from stream_warmer.model.runtime import configure_torch_threads
    from stream_warmer.trainer.lstm import lstm_loader, lstm_trainer
    from stream_warmer.trainer.publish import ModelPublisher
    from stream_warmer.trainer.rounds import TrainingRound
    from stream_warmer.trainer.service import TrainerService
    from stream_warmer.trainer.store import open_store

    # before the first round: on a shared machine oversubscribed threads made a
    # 50k-event round ~14x slower (191 s vs 14 s measured)
    configure_torch_threads(settings.model.cpu_threads)
    store = open_store(settings.model, settings.redis)
    publisher = ModelPublisher(
        store, settings.kafka, settings.topics.model_updates, settings.model.name
    )
    round_fn = TrainingRound(
        settings.trainer,
        settings.strategy,
        publisher,
        lstm_trainer(settings),
        lstm_loader(settings),
        serve_delay=_serve_delay(settings),
    )
    service = TrainerService(
        settings.kafka,
        settings.topics.access_events,
        settings.trainer,
        round_fn,
        max_key_bytes=settings.events.max_key_bytes,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    with _metrics_server(settings):
        rounds = service.run(max_rounds=args.max_rounds, idle_timeout_s=args.idle_timeout)
    outcomes = [r.outcome for r in service.results]
    log.info("trainer finished", extra={"rounds": rounds, "outcomes": outcomes})
    return 1 if outcomes and all(o == "failed" for o in outcomes) else 0


def _serve_delay(settings: Settings) -> Callable[[], int]:
    """The delay serve's replicas report in Redis (``serve.delay.gate_delay``)."""
    import time

    from stream_warmer.serve.delay import gate_delay
    from stream_warmer.serve.sinks import redis_client

    client, prefix = redis_client(settings.redis), settings.redis.key_prefix
    max_age = settings.trainer.gate_delay_max_age_s
    return lambda: gate_delay(client, prefix, int(time.time() * 1000), max_age)


def _metrics_server(settings: Settings) -> AbstractContextManager[object]:
    """The trainer's ``/metrics`` (its metrics live in the default registry) and
    ``/healthz`` (200 while the process runs), as serve and the loader serve theirs."""
    if not settings.metrics.enabled:
        return nullcontext()
    from prometheus_client import REGISTRY

    from stream_warmer.serve.metrics import MetricsServer

    return MetricsServer(REGISTRY, lambda: True, settings.metrics.host, settings.metrics.port)
