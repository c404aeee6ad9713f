"""``stream-warmer serve``: run one replica of the warmer in the consumer group."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from stream_warmer.settings import Settings

if TYPE_CHECKING:
    from stream_warmer.strategies.base import WarmingStrategy
    from stream_warmer.trainer.watcher import ModelWatcher

HELP = "consume access events, predict each tenant's next keys, write warm commands"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Bounded runs (for tests and benchmarks); a plain ``serve`` runs until SIGTERM."""
    parser.add_argument("--max-messages", type=int, default=None,
                        help="stop after consuming this many records")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without a record")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the strategy named in settings and serve until stopped.

    With ``strategy.name = lstm`` a model watcher reads ``model-updates`` (every
    version, outside the consumer group) and hot-swaps each verified version in
    between micro-batches; the fallback baseline serves until the first one exists.
    """
    from stream_warmer.serve.app import ServeApp

    if settings.strategy.name == "lstm":
        from stream_warmer.model.runtime import configure_torch_threads

        _check_device(settings)
        configure_torch_threads(settings.model.infer_threads)  # before the watcher's thread
    watcher = start_watcher(settings) if settings.strategy.name == "lstm" else None
    strategy = watcher.strategy_source() if watcher is not None else None
    if strategy is None:
        strategy = _baseline(settings)
    app = ServeApp(
        settings, strategy, strategy_source=watcher.strategy_source if watcher else None
    )
    if watcher is not None:
        from stream_warmer.trainer.metrics import WATCHER_METRICS

        app.metrics.include(WATCHER_METRICS)
    try:
        stats = app.run(max_messages=args.max_messages, idle_timeout_s=args.idle_timeout)
    finally:
        if watcher is not None:
            watcher.stop()
    log.info("serve finished", extra=stats.summary())
    return 0


def _check_device(settings: Settings) -> None:
    """Fail at start, not at the first model, when ``model.device`` cannot be had."""
    from stream_warmer.errors import ConfigError
    from stream_warmer.model.runtime import pick_device

    try:
        device = pick_device(settings.model.device)
    except RuntimeError as exc:
        msg = f"STREAM_WARMER_MODEL__DEVICE: {exc}"
        raise ConfigError(msg) from exc
    log.info("model device", extra={"device": str(device), "precision": settings.model.precision})


def _baseline(settings: Settings) -> WarmingStrategy:
    from stream_warmer.strategies import build_baseline

    name = settings.strategy.name
    if name == "lstm":
        name = settings.strategy.fallback
        log.warning("no LSTM model loaded yet: serving the fallback", extra={"strategy": name})
    strategy = build_baseline(name, settings.strategy)
    if settings.model.cache_capacity > 0:  # as the evaluator tells it (the peers' shadow)
        strategy.set_cache_capacity(settings.model.cache_capacity)
    return strategy


def start_watcher(settings: Settings) -> ModelWatcher:
    """Start reading model-updates; wait briefly so the first batch uses the latest model.

    ``bench pipeline --strategy lstm`` starts its replicas' watchers with this too.
    """
    from stream_warmer.trainer.lstm import lstm_loader
    from stream_warmer.trainer.store import open_store
    from stream_warmer.trainer.watcher import ModelWatcher

    if settings.model.cache_capacity == 0:
        if settings.model.budget_online:
            log.warning("model.budget_online is on but model.cache_capacity is 0: it needs "
                        "the warmed cache's capacity in objects; the LSTM serves without it "
                        "(set STREAM_WARMER_MODEL__CACHE_CAPACITY)")
        elif settings.model.presence_filter:
            log.info("model.cache_capacity is 0: the LSTM names its top k, with no presence "
                     "filter (set STREAM_WARMER_MODEL__CACHE_CAPACITY to the warmed cache's "
                     "objects)")
    watcher = ModelWatcher(
        settings.kafka,
        settings.topics.model_updates,
        settings.model.name,
        open_store(settings.model, settings.redis),
        lstm_loader(settings),
    )
    watcher.start()
    if not watcher.wait_ready(30.0):
        log.warning("model-updates not read to its end yet: starting on the fallback")
    return watcher
