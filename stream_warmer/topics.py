"""Create every topic the system uses, idempotently, and report what exists."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_warmer.errors import KafkaError
from stream_warmer.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What ``topics create`` makes: name, partitions and topic-level config."""

    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(topics: TopicSettings) -> list[TopicSpec]:
    """The four topics: access events, warm commands, dead letters, model updates."""
    retention = {"retention.ms": str(topics.retention_ms)}
    return [
        TopicSpec(topics.access_events, topics.partitions, retention),
        TopicSpec(topics.warm_commands, topics.partitions, retention),
        TopicSpec(topics.dead_letter, topics.partitions, {"retention.ms": str(7 * 86_400_000)}),
        # compacted, one partition: every replica reads all versions in order
        TopicSpec(topics.model_updates, 1, {"cleanup.policy": "compact"}),
    ]


def create_topics(
    kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 30.0
) -> dict[str, str]:
    """Create missing topics; return ``{name: "created" | "exists"}``.

    Raises ``KafkaError`` when the broker cannot be reached or refuses a topic for
    any reason other than that it already exists.
    """
    admin = AdminClient(kafka.client_config())
    specs = topic_specs(topics)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=topics.replication_factor,
            config=s.config,
        )
        for s in specs
    ]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    result: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
            result[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() != "TOPIC_ALREADY_EXISTS":
                msg = f"could not create topic {name!r}: {err.str()}"
                raise KafkaError(msg) from exc
            result[name] = "exists"
        except Exception as exc:  # timeouts surface as concurrent.futures errors
            msg = f"could not create topic {name!r} at {kafka.bootstrap_servers}: {exc}"
            raise KafkaError(msg) from exc
        log.info("topic %s", result[name], extra={"topic": name})
    return result


def describe_topics(
    kafka: KafkaSettings, names: list[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Partition counts of the named topics that exist."""
    admin = AdminClient(kafka.client_config())
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        msg = f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}"
        raise KafkaError(msg) from exc
    return {n: len(meta.topics[n].partitions) for n in names if n in meta.topics}
