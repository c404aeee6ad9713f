"""The model-update message and the compacted ``model-updates`` topic (DESIGN §2).

A record's key is the model name and its value a ``ModelUpdate`` (JSON). The newest
record of a name is the version every replica must serve: publishing a new version
and rolling back to an old one are the same operation (produce a record). Readers
consume the topic from the earliest offset with ``assign`` and a throw-away group
that never commits, so they are outside every consumer group and see every record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from stream_warmer.errors import KafkaError
from stream_warmer.settings import KafkaSettings


class ModelUpdate(msgspec.Struct, frozen=True):
    """One published model version; ``sha256`` is the hash of the weights."""

    name: str
    version: str
    sha256: str
    artifact: str
    manifest_sha256: str
    arch: dict[str, Any]
    vocab_version: str
    metrics: dict[str, Any]
    created_at: int


@dataclass(frozen=True, slots=True)
class BadUpdate:
    """Why a ``model-updates`` payload was not a valid ``ModelUpdate``."""

    reason: str
    detail: str


_decoder = msgspec.json.Decoder(ModelUpdate)
_encoder = msgspec.json.Encoder()


def encode_update(update: ModelUpdate) -> bytes:
    """JSON bytes of an update."""
    return _encoder.encode(update)


def decode_update(payload: bytes | None) -> ModelUpdate | BadUpdate:
    """The update, or a ``BadUpdate`` value naming what is wrong (never raises)."""
    if not payload:
        return BadUpdate("empty", "record has no value")
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        return BadUpdate("schema", str(exc))
    except msgspec.DecodeError as exc:
        return BadUpdate("not_json", str(exc))


def new_version(created_at_ms: int, sha256: str) -> str:
    """A sortable, readable version: UTC time of creation and the hash prefix."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created_at_ms / 1000))
    return f"{stamp}-{sha256[:8]}"


def publish_update(
    kafka: KafkaSettings, topic: str, update: ModelUpdate, timeout_s: float = 30.0
) -> None:
    """Produce the update keyed by model name and wait until the broker has it."""
    from confluent_kafka import Producer

    producer = Producer({**kafka.client_config(), "acks": "all", "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(
        topic, key=update.name.encode(), value=encode_update(update), on_delivery=on_delivery
    )
    left = producer.flush(timeout_s)
    if errors or left:
        msg = f"model update {update.version} not delivered to {topic!r}: {errors or 'timeout'}"
        raise KafkaError(msg)


def reader_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Consumer options of a reader outside every group (unique group, no commits)."""
    return {
        **kafka.client_config(),
        "group.id": f"{kafka.consumer_group}-model-reader-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }


def assign_from_start(consumer: Any, topic: str, timeout_s: float) -> dict[int, int]:
    """Assign every partition of ``topic`` at its low watermark.

    Returns the high watermark of each partition that holds records now.
    """
    from confluent_kafka import KafkaException, TopicPartition

    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        parts = sorted(meta.topics[topic].partitions)
        if not parts or meta.topics[topic].error is not None:
            msg = f"topic {topic!r} does not exist (run `stream-warmer topics create`)"
            raise KafkaError(msg)
        highs: dict[int, int] = {}
        starts = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:  # empty partitions have nothing to wait for
                highs[p] = high
            starts.append(TopicPartition(topic, p, low))
    except KafkaException as exc:
        msg = f"cannot read {topic!r}: {exc}"
        raise KafkaError(msg) from exc
    consumer.assign(starts)
    return highs


def read_updates(
    kafka: KafkaSettings,
    topic: str,
    name: str,
    timeout_s: float = 10.0,
    on_bad: Callable[[BadUpdate], None] | None = None,
) -> list[ModelUpdate]:
    """Every update of ``name`` now on the topic, in offset order (one partition)."""
    from confluent_kafka import Consumer

    consumer = Consumer(reader_config(kafka))
    try:
        highs = assign_from_start(consumer, topic, timeout_s)
        out: list[ModelUpdate] = []
        deadline = time.monotonic() + timeout_s
        while not caught_up(consumer, topic, highs):
            if time.monotonic() > deadline:
                msg = f"timed out reading {topic!r} to its end"
                raise KafkaError(msg)
            record = consumer.poll(0.2)
            if record is None:
                continue
            if record.error() is not None:
                raise KafkaError(str(record.error()))
            _collect(record, name, out, on_bad)
        return out
    finally:
        consumer.close()


def caught_up(consumer: Any, topic: str, highs: dict[int, int]) -> bool:
    """Whether the consumer's position has reached ``highs`` on every partition.

    Positions are used (not the last offset seen) because compaction leaves gaps.
    """
    from confluent_kafka import TopicPartition

    if not highs:
        return True
    positions = consumer.position([TopicPartition(topic, p) for p in highs])
    return all(tp.offset >= highs[tp.partition] for tp in positions)


def _collect(
    msg: Any, name: str, out: list[ModelUpdate], on_bad: Callable[[BadUpdate], None] | None
) -> None:
    if msg.key() != name.encode():
        return
    update = decode_update(msg.value())
    if isinstance(update, ModelUpdate):
        out.append(update)
    elif on_bad is not None:
        on_bad(update)
