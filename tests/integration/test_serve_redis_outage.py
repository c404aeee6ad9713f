"""Redis stopped and restarted mid-run: the warmer pauses, recovers, and loses nothing.

Uses its OWN redis-server on a free port (append-only file, so what was written
before the stop survives the restart) - never the shared one. Without ``redis-server``
on the PATH the test skips locally and fails under ``CI=true`` (like the services in
``tests/conftest.py``, CI never passes by skipping).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from stream_warmer.serve.app import ServeApp
from stream_warmer.strategies import build_baseline
from tests.integration.serve_helpers import (
    OwnRedis,
    committed,
    delete_group,
    event_bytes,
    high_watermarks,
    produce,
    serve_env,
    settings_from,
)

pytestmark = pytest.mark.integration
PARTITIONS = 2


def test_redis_outage_pauses_then_recovers_without_loss(
    kafka_bootstrap: str, own_redis: OwnRedis, topic_factory: Callable[..., str],
    unique: Callable[[str], str],
) -> None:
    topics = {"events": topic_factory("events", PARTITIONS), "warm": topic_factory("warm", 1),
              "dlq": topic_factory("dlq", 1)}
    group = unique("serve")
    env = serve_env(kafka_bootstrap, own_redis.url, group, topics, "sw",
                    STRATEGY__NAME="nextkey", POLICY__STALE_AFTER_MS="600000",
                    BATCH__POLL_BATCH="100")
    settings = settings_from(env)
    app = ServeApp(settings, build_baseline("nextkey", settings.strategy))
    runner = threading.Thread(target=app.run, kwargs={"idle_timeout_s": 4.0})
    runner.start()
    try:
        total = 4000
        for start in range(0, total, 200):
            produce(kafka_bootstrap, topics["events"],
                    [(f"t{i}", event_bytes(f"t{i}", str(i))) for i in range(start, start + 200)])
            if start == 1000:
                own_redis.stop()
            if start == 2400:
                assert app.metrics.paused._value.get() == 1  # paused while Redis is down
                own_redis.start()
            time.sleep(0.1)
        runner.join(60)
        assert not runner.is_alive()
    finally:
        app.stop()
        runner.join(10)

    assert app.stats.rehandled > 0
    text = app.metrics.render().decode()
    assert "stream_warmer_rehandled_events_total" in text
    assert "stream_warmer_redis_up 1.0" in text and "stream_warmer_paused 0.0" in text
    client = redis.Redis(port=own_redis.port)
    pipe = client.pipeline(transaction=False)
    for i in range(total):
        pipe.zscore(f"sw:t{i}:queue", str(i + 1))
    missing = [i for i, score in enumerate(pipe.execute()) if score is None]
    client.close()
    assert missing == []
    ends = high_watermarks(kafka_bootstrap, topics["events"], PARTITIONS)
    assert committed(kafka_bootstrap, group, topics["events"], PARTITIONS) == ends
    delete_group(kafka_bootstrap, group)
