"""The app's one producer: ``Outbox`` queues warm commands and dead letters, and keeps
count of what failed (the checkpoint refuses to commit after a failed delivery)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError as _KafkaErr
from confluent_kafka import KafkaException

from stream_warmer.errors import KafkaError

log = logging.getLogger(__name__)


# a delivery failed for the record itself: the same bytes would fail the same way forever
_RECORD_ERRORS = frozenset({_KafkaErr.MSG_SIZE_TOO_LARGE, _KafkaErr.RECORD_LIST_TOO_LARGE,
                            _KafkaErr.INVALID_RECORD, _KafkaErr.INVALID_MSG_SIZE})
Rejected = Callable[[str, str], None]  # (topic, "replaced" | "dropped")
# a full local queue waits at most this long for room (well below max.poll.interval.ms)
MAX_BLOCK_S = 30.0


class Outbox:
    """The app's one producer (warm commands and dead letters).

    Three kinds of failure:

    * a record refused for what it is: by ``produce`` (any non-fatal
      ``KafkaException``, e.g. ``MSG_SIZE_TOO_LARGE``) or in its delivery report (too
      large or invalid for the broker). Sending the same bytes again would fail again,
      so it never stops the app: it is logged and reported to ``on_rejected``, and a
      record with a ``fallback`` (a dead letter's minimal form) is replaced by it;
    * the local queue stays full (``BufferError``) for ``max_block_s`` of serving
      delivery reports, or ``stopping()`` says a stop was requested while it is: the
      record is not queued (the loop must not hang, nor outlive a SIGTERM), and it
      counts as failed, below; once anything failed, a full queue fails at once;
    * any other failed delivery (broker gone, not authorised): counted in ``failed``,
      and the checkpoint then refuses to commit. A fatal producer error raises.
    """

    def __init__(self, producer: Any, on_rejected: Rejected | None = None, *,
                 stopping: Callable[[], bool] = lambda: False,
                 max_block_s: float = MAX_BLOCK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._producer = producer
        self._on_rejected = on_rejected
        self._stopping, self._max_block_s, self._clock = stopping, max_block_s, clock
        self._replacements: list[tuple[str, str, bytes]] = []
        self.failed = 0
        self.last_error: str | None = None

    def produce(self, topic: str, key: str, value: bytes, fallback: bytes | None = None) -> None:
        """Queue a record; when the local queue is full, serve deliveries and retry (for
        at most ``max_block_s``, and not once a stop is requested: see the class)."""
        report = self._delivered if fallback is None else partial(
            self._delivered_or_replace, topic, key, fallback)
        try:
            self._send(topic, key, value, report)
        except KafkaException as exc:
            self._refused(topic, key, fallback, exc.args[0])

    def poll(self) -> None:
        """Serve delivery reports without blocking."""
        self._producer.poll(0)
        self._send_replacements()

    def flush(self, timeout_s: float) -> int:
        """Wait for every queued record (and the replacements of refused ones); return
        how many are still undelivered."""
        left = int(self._producer.flush(timeout_s))
        while self._replacements and not left:  # replacements have no fallback: 1 round
            self._send_replacements()
            left = int(self._producer.flush(timeout_s))
        return left

    def _send(self, topic: str, key: str, value: bytes, report: Callable[[Any, Any], None]
              ) -> None:
        give_up_at: float | None = None
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=report)
                return
            except BufferError:
                now = self._clock()
                give_up_at = now + self._max_block_s if give_up_at is None else give_up_at
                if self.failed or self._stopping() or now >= give_up_at:
                    self._not_queued(topic)
                    return
                self._producer.poll(0.05)

    def _not_queued(self, topic: str) -> None:
        if not self.failed:
            log.error("producer queue full: records not queued, nothing is committed",
                      extra={"topic": topic, "stopping": self._stopping()})
        self.failed += 1
        self.last_error = f"the producer's local queue stayed full (topic={topic!r})"

    def _send_replacements(self) -> None:
        pending, self._replacements = self._replacements, []
        for topic, key, value in pending:
            self.produce(topic, key, value)

    def _refused(self, topic: str, key: str, fallback: bytes | None, err: Any) -> None:
        if err.fatal():
            msg = f"producer failed fatally on topic={topic!r}: {err.str()}"
            raise KafkaError(msg)
        self._rejected(topic, err, fallback is not None)
        if fallback is not None:
            self.produce(topic, key, fallback)

    def _rejected(self, topic: str, err: Any, replaced: bool) -> None:
        outcome = "replaced" if replaced else "dropped"
        log.log(logging.WARNING if replaced else logging.ERROR, "record refused",
                extra={"topic": topic, "outcome": outcome, "error": err.str()})
        if self._on_rejected is not None:
            self._on_rejected(topic, outcome)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        if err.code() in _RECORD_ERRORS:
            self._rejected(msg.topic() if msg is not None else "", err, replaced=False)
            return
        self.failed += 1
        self.last_error = err.str()

    def _delivered_or_replace(self, topic: str, key: str, fallback: bytes, err: Any,
                              msg: Any) -> None:
        if err is not None and err.code() in _RECORD_ERRORS:
            self._rejected(topic, err, replaced=True)
            self._replacements.append((topic, key, fallback))
            return
        self._delivered(err, msg)
