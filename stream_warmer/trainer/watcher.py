"""Hot swap in each serve replica: watch ``model-updates``, load in the background.

A ``ModelWatcher`` thread reads the compacted ``model-updates`` topic from the
earliest offset with ``assign`` and a throw-away group that never commits, so every
replica sees every version, outside the serve consumer group. At start it reads to
the end and loads only the newest record of its model name (a replica started after
a publication serves that version from its first batch: call ``wait_ready`` before
consuming). Each later record is applied as it arrives, a rollback included.

Applying a version, all on the watcher thread: fetch the artifact from the store
(both hashes checked and, with ``model.signing_key``, the signature), check that the
update's architecture, weights hash and vocabulary version are the manifest's and
that every weight is finite, then build the strategy with the injected loader (the
LSTM checkpoint code checks architecture and shapes). On success the new strategy
waits in a one-slot mailbox that ``strategy_source()`` empties: ServeApp calls it
between micro-batches, so the consume loop only ever pays for a lock and a pointer
swap. Streaming state is re-initialised when the vocabulary changes; with the same
vocabulary a strategy that offers ``adopt_state(previous)`` takes it over. On
any failure the version is rejected with a log line and
``stream_warmer_model_updates_total{result="rejected",reason=...}`` (``unsigned``,
``bad_signature``, ``store_unavailable`` or ``invalid``), and the model already
serving stays.

A store that cannot deliver the artifact (Redis unreachable, a store directory that
cannot be read: the volume is gone) says nothing about the version, so that rejection
is not final: the version waits as the pending retry and is fetched again with
jittered exponential backoff (``retry_first_s`` doubled per failure, at most
``retry_max_s``; each failed attempt is counted as a ``store_unavailable`` rejection)
until it loads. A newer record on the topic (a rollback included) replaces the pending
retry; a version that is bad in itself (hash, signature, shapes) is never retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from stream_warmer.errors import ModelError, SinkUnavailableError, StreamWarmerError
from stream_warmer.settings import KafkaSettings
from stream_warmer.strategies.base import WarmingStrategy
from stream_warmer.trainer import metrics as m
from stream_warmer.trainer.artifact import Artifact
from stream_warmer.trainer.checks import check_artifact, rejection_reason
from stream_warmer.trainer.fetchretry import FetchRetry, same_update
from stream_warmer.trainer.rounds import LoadFn
from stream_warmer.trainer.store import ModelStore
from stream_warmer.trainer.updates import (
    BadUpdate,
    ModelUpdate,
    assign_from_start,
    caught_up,
    decode_update,
    reader_config,
)

log = logging.getLogger(__name__)


class ModelWatcher:
    """Background reader of ``model-updates`` exposing ``strategy_source()``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        name: str,
        store: ModelStore,
        load: LoadFn,
        *,
        retry_s: float = 2.0,
        retry_first_s: float = 0.5,
        retry_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self.name = name
        self._store = store
        self._load = load
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._mailbox: WarmingStrategy | None = None
        self._mailbox_update: ModelUpdate | None = None
        self._serving: tuple[WarmingStrategy, ModelUpdate] | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: ModelUpdate | None = None
        self.rejected: list[tuple[str, str]] = []  # (version, reason), newest last
        self.retry = FetchRetry(retry_first_s, retry_max_s, clock)

    def start(self) -> None:
        """Start the watcher thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="model-watcher", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the topic was read to its end and its newest version applied."""
        return self._ready.wait(timeout_s)

    def strategy_source(self) -> WarmingStrategy | None:
        """A newly loaded strategy (once), or ``None`` when there is nothing new.

        Called by ServeApp on its own thread between micro-batches. When the new
        version has the vocabulary of the one it replaces and the strategy offers
        ``adopt_state(previous)``, the streaming state carries over (here, on the serve
        thread, so the old strategy is not mutated concurrently); otherwise the new
        strategy starts fresh.
        """
        with self._lock:
            strategy, self._mailbox = self._mailbox, None
            update = self._mailbox_update
        if strategy is None or update is None:
            return None
        previous, self._serving = self._serving, (strategy, update)
        adopt = getattr(strategy, "adopt_state", None)
        same_vocab = previous is not None and previous[1].vocab_version == update.vocab_version
        if previous is not None and same_vocab and callable(adopt):
            adopt(previous[0])
        return strategy

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and close its consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch()
            except StreamWarmerError as exc:
                log.warning("model watcher: retrying", extra={"error": str(exc)})
                self._stop.wait(self._retry_s)

    def _watch(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(reader_config(self._kafka))
        try:
            highs = assign_from_start(consumer, self._topic, timeout_s=10.0)
            self.retry.clear()  # the topic is read again: its newest record decides
            for update in reversed(self._catch_up(consumer, highs)):
                if self.apply(update):  # newest first; an older good one if it is bad
                    break
            self._ready.set()
            while not self._stop.is_set():
                latest = self._next(consumer, timeout_s=0.2)
                if latest is not None:
                    self.receive(latest)
                else:
                    self.retry_due()
        finally:
            consumer.close()

    def _catch_up(self, consumer: Any, highs: dict[int, int]) -> list[ModelUpdate]:
        seen: list[ModelUpdate] = []
        while not self._stop.is_set() and not caught_up(consumer, self._topic, highs):
            update = self._next(consumer, timeout_s=0.2)
            if update is not None:
                seen.append(update)
                del seen[:-16]  # only the newest few can matter
        return seen

    def _next(self, consumer: Any, timeout_s: float) -> ModelUpdate | None:
        record = consumer.poll(timeout_s)
        if record is None:
            return None
        if record.error() is not None:
            msg = f"model-updates consumer error: {record.error()}"
            raise ModelError(msg)
        if record.key() != self.name.encode():
            return None
        update = decode_update(record.value())
        if isinstance(update, BadUpdate):
            m.MODEL_UPDATES.labels("bad_record", update.reason).inc()
            log.warning(
                "model update record rejected",
                extra={"reason": update.reason, "offset": record.offset()},
            )
            return None
        return update

    def receive(self, update: ModelUpdate) -> bool:
        """A record read live: it is the newest word, so it replaces any pending retry."""
        self.retry.clear()
        return self.apply(update)

    def retry_due(self) -> bool:
        """Fetch the version the store could not deliver again, once its wait has passed."""
        update = self.retry.due()
        return update is not None and self.apply(update)

    def apply(self, update: ModelUpdate) -> bool:
        """Fetch, check and load ``update``; on success queue it for the swap."""
        current = self.current
        if current is not None and same_update(current, update):
            m.MODEL_UPDATES.labels("same", "").inc()
            return False
        started = time.perf_counter()
        try:
            artifact = self._fetch(update)
            check_artifact(artifact, update)
            strategy = self._load(artifact, update.version)
        except Exception as exc:  # any bad artifact: reject it, keep the serving model
            self._reject(update, exc)
            return False
        pending = self.retry.update
        if pending is not None and same_update(pending, update):
            self.retry.clear()
        self._accept(update, strategy, time.perf_counter() - started)
        return True

    def _fetch(self, update: ModelUpdate) -> Artifact:
        try:
            return self._store.fetch(update)
        except ModelError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise
            # a store directory that cannot be read (its volume gone): the store is down,
            # the version may be fine
            msg = f"model store unavailable: {exc}"
            raise SinkUnavailableError(msg) from exc

    def _accept(self, update: ModelUpdate, strategy: WarmingStrategy, seconds: float) -> None:
        with self._lock:
            self._mailbox, self._mailbox_update = strategy, update
        previous, self.current = self.current, update
        m.MODEL_UPDATES.labels("loaded", "").inc()
        m.MODEL_LOAD_SECONDS.observe(seconds)
        if previous is not None:
            m.MODEL_SERVING.labels(self.name, previous.version).set(0)
        m.MODEL_SERVING.labels(self.name, update.version).set(1)
        vocab_changed = previous is None or previous.vocab_version != update.vocab_version
        log.info(
            "model version loaded",
            extra={
                "version": update.version,
                "previous": previous.version if previous else None,
                "vocab_changed": vocab_changed,
                "load_s": round(seconds, 4),
            },
        )

    def _reject(self, update: ModelUpdate, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.rejected.append((update.version, reason))
        del self.rejected[:-100]
        label = rejection_reason(exc)
        m.MODEL_UPDATES.labels("rejected", label).inc()
        retry_s = None
        if label == "store_unavailable":
            retry_s = self.retry.failed(update)
        elif self.retry.update is not None and same_update(self.retry.update, update):
            self.retry.clear()  # fetched at last, and bad in itself: final
        log.error(
            "model version rejected; keeping the serving model",
            extra={
                "version": update.version,
                "rejection": label,
                "reason": reason,
                "serving": self.current.version if self.current else None,
                "retry_in_s": None if retry_s is None else round(retry_s, 3),
            },
        )
