"""The serve apps of a ``bench pipeline`` row, and the LSTM that an ``lstm`` row serves.

``train_and_publish`` trains with the trainer's own code and publishes as a training
round does; ``Served`` starts one serve app (for ``lstm``: on the fallback, with a
model watcher of its own, swapping between micro-batches as a replica does) and
waits for what the row needs before counting (``loaded``, ``swapped``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_warmer.errors import ConfigError
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings, check_lstm_bounds
from stream_warmer.strategies.base import BASELINE_VERSION, WarmingStrategy

log = logging.getLogger(__name__)
SWAP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class TrainedModel:
    """The LSTM of an ``lstm`` row, as published into the run's store and topic."""

    version: str
    updates_topic: str
    events: int
    train_s: float


def check_lstm_settings(settings: Settings, train_events: int) -> None:
    """What ``serve`` with ``strategy.name = lstm`` and the trainer would refuse."""
    check_lstm_bounds(settings.window.max_tenants, settings.model.max_state_slots)
    if train_events < settings.trainer.min_events:
        msg = (f"--train-events {train_events} is below trainer.min_events "
               f"{settings.trainer.min_events}: the trainer would not train on so few")
        raise ConfigError(msg)


def lstm_settings(res: Any, model: TrainedModel) -> Settings:
    """The run's settings as an ``lstm`` replica sees them: its store, its updates topic."""
    s: Settings = res.settings
    return s.model_copy(update={
        "topics": s.topics.model_copy(update={"model_updates": model.updates_topic}),
        "model": s.model.model_copy(update={"store": "redis"}),
        "strategy": s.strategy.model_copy(update={"name": "lstm"}),
    })


def train_and_publish(res: Any, trace: Path, events: list[AccessEvent],
                      train_events: int) -> TrainedModel:
    """Train on ``events`` (the trace's first ``train_events``) with the trainer's code;
    publish the artifact."""
    from stream_warmer.model.train import offline_delay
    from stream_warmer.trainer.lstm import lstm_trainer
    from stream_warmer.trainer.publish import ModelPublisher
    from stream_warmer.trainer.store import open_store

    if len(events) < train_events:
        msg = (f"{trace} has {len(events)} events, fewer than --train-events {train_events} "
               "(the LSTM trains on the events before the measured ones)")
        raise ConfigError(msg)
    s: Settings = res.settings
    log.info("training the lstm", extra={"events": len(events)})
    started = time.monotonic()
    candidate = lstm_trainer(s)(events, None, offline_delay(s.trainer))
    train_s = time.monotonic() - started
    topic = res.topic("bench-model-updates", {"cleanup.policy": "compact"})
    # the run's own Redis prefix (whatever model.store says): deleted with its keys
    store = open_store(s.model.model_copy(update={"store": "redis"}), s.redis)
    update = ModelPublisher(store, s.kafka, topic, s.model.name).publish(
        candidate.artifact, {"source": "bench pipeline", "train_events": len(events)},
        time.time_ns() // 1_000_000)
    log.info("lstm published", extra={"version": update.version, "train_s": round(train_s, 1)})
    return TrainedModel(update.version, topic, len(events), train_s)


class Swap:
    """The watcher's ``strategy_source`` as the app polls it, noting when the LSTM took
    over (on the serve thread, between micro-batches) and how many events came first."""

    def __init__(self, source: Callable[[], WarmingStrategy | None], app: Any = None) -> None:
        self._source = source
        self.app = app
        self.done = threading.Event()
        self.version: str | None = None
        self.consumed_before: int | None = None

    def __call__(self) -> WarmingStrategy | None:
        new = self._source()
        if new is not None and not self.done.is_set():
            self.version = new.model_version
            self.consumed_before = self.app.stats.consumed if self.app is not None else 0
            self.done.set()
        return new


class Served:
    """One serve app of a row: its watcher (``lstm``) and the thread it runs on."""

    def __init__(self, res: Any, topic: str, strategy: str, model: TrainedModel | None,
                 swap_timeout_s: float, **app_options: Any) -> None:
        self.strategy = strategy
        self.watcher: Any = None
        self.swap: Swap | None = None
        self._timeout_s = swap_timeout_s
        self._model = model
        if strategy != "lstm":
            self.app = res.app(topic, strategy, **app_options)
            return
        assert model is not None
        from stream_warmer.cli.serve import start_watcher
        from stream_warmer.trainer.metrics import WATCHER_METRICS

        settings = lstm_settings(res, model)
        self.watcher = start_watcher(settings)
        self.swap = Swap(self.watcher.strategy_source)
        self.app = res.app(topic, "lstm", settings=settings, strategy_source=self.swap,
                           **app_options)
        self.swap.app = self.app
        self.app.metrics.include(WATCHER_METRICS)

    def loaded(self) -> None:
        """Until the watcher has loaded the published version (before the app starts)."""
        if self.watcher is None or self._model is None:
            return
        deadline = time.monotonic() + self._timeout_s
        while True:
            current = self.watcher.current
            if current is not None and current.version == self._model.version:
                return
            if time.monotonic() > deadline:
                self.stop_watcher()
                msg = (f"the model watcher did not load lstm {self._model.version} within "
                       f"{self._timeout_s:.0f} s (serving: "
                       f"{current.version if current else 'the fallback'}; rejected: "
                       f"{self.watcher.rejected or 'none'})")
                raise RuntimeError(msg)
            time.sleep(0.05)

    def swapped(self) -> None:
        """Until the running app serves the LSTM (its first loop turns swap it in)."""
        if self.swap is None:
            return
        if not self.swap.done.wait(self._timeout_s):
            msg = (f"serve did not swap to the lstm within {self._timeout_s:.0f} s; "
                   f"rejected versions: {self.watcher.rejected or 'none'}")
            raise RuntimeError(msg)

    def stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def served_version(self) -> str:
        """What the app served; for ``lstm`` it must be the published version."""
        if self.swap is None:
            return BASELINE_VERSION
        assert self._model is not None
        if self.swap.version != self._model.version:
            msg = f"serve swapped to {self.swap.version}, not to {self._model.version}"
            raise RuntimeError(msg)
        return self._model.version


class Runner:
    """``fn`` on its own thread; ``join`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._error: BaseException | None = None

        def target() -> None:
            try:
                fn()
            except BaseException as exc:  # re-raised by join, on the bench's thread
                self._error = exc

        self.thread = threading.Thread(target=target, name="bench-serve")
        self.thread.start()

    def join(self, timeout_s: float | None) -> None:
        self.thread.join(timeout_s)
        if self._error is not None:
            raise self._error
