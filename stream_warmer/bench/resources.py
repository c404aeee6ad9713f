"""What a benchmark creates (uuid topics, groups, a Redis key prefix) and deletes after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from stream_warmer.settings import Settings


class BenchResources:
    """Context manager: make uuid-named things, delete them all on exit."""

    def __init__(self, settings: Settings) -> None:
        run = uuid.uuid4().hex[:10]
        self.prefix = f"bench-{run}"
        self.settings = settings.model_copy(update={
            "redis": settings.redis.model_copy(update={"key_prefix": self.prefix}),
        })
        self._topics: list[str] = []
        self._groups: list[str] = []

    def __enter__(self) -> BenchResources:
        return self

    def __exit__(self, *exc: object) -> None:
        self._delete_topics_and_groups()
        self._delete_redis_keys()

    def topic(self, name: str, config: dict[str, str] | None = None) -> str:
        """A fresh topic with the configured partition count (and topic ``config``)."""
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        topic = f"{name}-{uuid.uuid4().hex[:10]}"
        admin = AdminClient(self.settings.kafka.client_config())
        t = self.settings.topics
        new = NewTopic(topic, t.partitions, t.replication_factor, config=config or {})
        admin.create_topics([new])[topic].result(30)
        self._topics.append(topic)
        return topic

    def group(self, name: str) -> str:
        """A fresh consumer group name (deleted on exit)."""
        group = f"{name}-{uuid.uuid4().hex[:10]}"
        self._groups.append(group)
        return group

    def app(self, topic: str, strategy: str, *, stale_after_ms: float | None = None,
            latency_observer: Callable[[float], None] | None = None,
            settings: Settings | None = None,
            strategy_source: Callable[[], Any] | None = None) -> Any:
        """A serve app on ``topic`` in a fresh group, writing to fresh side topics.

        ``settings``: derived from this run's (same Redis prefix), e.g. with the model
        store and updates topic of an LSTM run; ``strategy_source``: the hot swap (a
        model watcher's). With ``strategy`` ``lstm`` the app starts on
        ``strategy.fallback``, as ``serve`` does before its watcher loaded a model.
        """
        from stream_warmer.serve.app import ServeApp
        from stream_warmer.strategies import build_baseline

        s = settings or self.settings
        group = self.group("bench-serve")
        policy = s.policy
        if stale_after_ms is not None:
            policy = policy.model_copy(update={"stale_after_ms": stale_after_ms})
        settings = s.model_copy(update={
            "kafka": s.kafka.model_copy(update={"consumer_group": group}),
            "topics": s.topics.model_copy(update={
                "access_events": topic, "warm_commands": self.topic("bench-warm"),
                "dead_letter": self.topic("bench-dlq")}),
            "policy": policy,
        })
        first = settings.strategy.fallback if strategy == "lstm" else strategy
        return ServeApp(settings, build_baseline(first, settings.strategy),
                        strategy_source=strategy_source, latency_observer=latency_observer,
                        serve_http=False)

    def _delete_topics_and_groups(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.settings.kafka.client_config())
        futures = list(admin.delete_topics(self._topics, operation_timeout=30).values())
        if self._groups:
            futures += list(admin.delete_consumer_groups(self._groups).values())
        for fut in futures:
            # best effort: a leftover uuid topic harms nobody
            with contextlib.suppress(Exception):
                fut.result(30)

    def _delete_redis_keys(self) -> None:
        from stream_warmer.serve.sinks import redis_client

        client = redis_client(self.settings.redis)
        try:
            batch: list[Any] = []
            for key in client.scan_iter(f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        finally:
            client.close()
