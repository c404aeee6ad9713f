"""Fixtures of the integration tests that need more than the shared stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serve_helpers import OwnRedis, require_redis_server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own on a free port (append-only), stopped after."""
    require_redis_server()
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()
