"""Dead letters: every bad event goes to the dead-letter topic in a record that fits.

A record's value may be as large as the broker takes (a 900 KB non-JSON event is
valid Kafka), and its base64 in a dead letter is a third larger: sent whole, the
producer refused it (``MSG_SIZE_TOO_LARGE``), nothing was committed, and every
restart died on the same event. So a dead letter (key and value) is at most
``events.dead_letter_max_bytes``: the original value is cut to the prefix that fits,
and its length and sha256 are recorded. Each letter also has a minimal form (no
payload at all), which the outbox sends instead when the letter itself is refused
(a topic whose ``max.message.bytes`` is below ours).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from stream_warmer.events import BadEvent, DeadLetter, encode
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.outbox import Outbox

# a dead letter's detail and Kafka key are cut to this many characters / bytes, so
# the letter without its payload stays far below the smallest allowed limit
MAX_DETAIL_CHARS = 256
MAX_KEY_BYTES = 256


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as it is produced: key, value, and the minimal fallback value."""

    key: str
    value: bytes
    minimal: bytes


def bounded_letter(bad: BadEvent, where: tuple[str, int, int], key: bytes | None,
                   value: bytes | None, max_bytes: int) -> Letter:
    """The dead letter of ``value`` (from topic, partition, offset ``where``) whose key
    and value together take at most ``max_bytes``; ``original`` is cut to fit."""
    original = value or b""
    kafka_key = (key or b"")[:MAX_KEY_BYTES].decode(errors="replace")
    topic, partition, offset = where
    empty = DeadLetter(bad.reason, bad.detail[:MAX_DETAIL_CHARS], topic, partition,
                       offset, b"", len(original),
                       hashlib.sha256(original).hexdigest(), truncated=bool(original))
    minimal = encode(empty)
    # base64 takes 4 bytes per 3; one byte of slack for "false" being longer than "true"
    room = max_bytes - len(kafka_key.encode()) - len(minimal) - 1
    assert room >= 0, "events.dead_letter_max_bytes is validated far above a minimal letter"
    keep = room // 4 * 3
    letter = msgspec.structs.replace(empty, original=original[:keep],
                                     truncated=len(original) > keep)
    return Letter(kafka_key, encode(letter), minimal)


class DeadLetters:
    """Sends the dead letters of one serve app through its outbox, counted per reason
    (a refused letter never raises: see ``Outbox``)."""

    def __init__(self, outbox: Outbox, topic: str, source_topic: str, max_bytes: int,
                 metrics: ServeMetrics) -> None:
        self._outbox = outbox
        self._topic = topic
        self._source_topic = source_topic
        self._max_bytes = max_bytes
        self._metrics = metrics

    def send(self, msg: Any, bad: BadEvent) -> None:
        """Queue the dead letter of ``msg`` (a consumed ``confluent_kafka.Message``)."""
        where = (msg.topic() or self._source_topic, msg.partition(), msg.offset())
        letter = bounded_letter(bad, where, msg.key(), msg.value(), self._max_bytes)
        self._outbox.produce(self._topic, letter.key, letter.value, fallback=letter.minimal)
        self._metrics.bad_events.labels(bad.reason).inc()
