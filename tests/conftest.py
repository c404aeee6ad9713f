"""Shared fixtures. Integration tests take the stack from the environment:

- ``STREAM_WARMER_TEST_KAFKA`` (default ``127.0.0.1:9092``)
- ``STREAM_WARMER_TEST_REDIS`` (default ``redis://127.0.0.1:6379/15``)

Locally, an unreachable service skips its integration tests; with ``CI=true`` it
fails them, so CI can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest

KAFKA = os.environ.get("STREAM_WARMER_TEST_KAFKA", "127.0.0.1:9092")
REDIS = os.environ.get("STREAM_WARMER_TEST_REDIS", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port} (start it with scripts/devstack up)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of a real broker (fails under CI=true if unreachable)."""
    host, _, port = KAFKA.split(",")[0].rpartition(":")
    _require("Kafka", host, int(port))
    return KAFKA


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis server (fails under CI=true if unreachable)."""
    parsed = urlparse(REDIS)
    _require("Redis", parsed.hostname or "127.0.0.1", parsed.port or 6379)
    return REDIS


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Factory of uuid-suffixed names for topics, groups and key prefixes."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def topic_factory(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Create uuid-named topics on the real broker; delete them afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique(prefix)
        fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name]
        fut.result(timeout=30)
        made.append(name)
        return name

    yield make
    if made:
        for fut in admin.delete_topics(made, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # cleanup is best effort
                fut.result(timeout=30)
