"""Two warmers in one group, a SIGKILL mid-stream, and a restart from committed offsets.

Every event is its own tenant with an integer key, and the strategy is ``nextkey``:
each event, however it is batched, must leave ``key + 1`` in its tenant's Redis
queue. So "every event processed at least once" is checked event by event, and
"committed everything" by comparing committed offsets with the high watermarks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from stream_warmer.serve.app import ServeApp
from stream_warmer.strategies import build_baseline
from tests.integration.serve_helpers import (
    committed,
    delete_group,
    event_bytes,
    high_watermarks,
    produce,
    serve_env,
    settings_from,
)

pytestmark = pytest.mark.integration
PARTITIONS = 4


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, topic_factory: Callable[..., str],
          unique: Callable[[str], str]) -> Iterator[dict[str, str]]:
    topics = {"events": topic_factory("events", PARTITIONS), "warm": topic_factory("warm", 2),
              "dlq": topic_factory("dlq", 1)}
    group, prefix = unique("serve"), unique("sw")
    env = serve_env(kafka_bootstrap, redis_url, group, topics, prefix,
                    STRATEGY__NAME="nextkey", BATCH__POLL_BATCH="200",
                    POLICY__STALE_AFTER_MS="600000")  # takeover waits out a session timeout
    yield env | {"group": group, "prefix": prefix, "kafka": kafka_bootstrap, "redis": redis_url,
                 "topic": topics["events"]}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)


def _events(start: int, stop: int) -> list[tuple[str, bytes]]:
    return [(f"t{i}", event_bytes(f"t{i}", str(i))) for i in range(start, stop)]


def _missing_warms(stack: dict[str, str], n: int) -> list[int]:
    """Events i in 0..n-1 whose warm command (key i+1 for tenant t<i>) is not in Redis."""
    client = redis.Redis.from_url(stack["redis"])
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.zscore(f"{stack['prefix']}:t{i}:queue", str(i + 1))
    scores = pipe.execute()
    client.close()
    return [i for i, score in enumerate(scores) if score is None]


def _all_committed(stack: dict[str, str]) -> bool:
    ends = high_watermarks(stack["kafka"], stack["topic"], PARTITIONS)
    return committed(stack["kafka"], stack["group"], stack["topic"], PARTITIONS) == ends


def _spawn(stack: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_WARMER_")}
    env |= {k: v for k, v in stack.items() if k.startswith("STREAM_WARMER_")}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "stream_warmer", "serve"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _assigned(log: Path) -> list[list[int]]:
    found = re.findall(r"assigned partitions=\[([\d, ]*)\]", log.read_text())
    return [[int(p) for p in part.split(",") if p.strip()] for part in found]


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_two_warmers_split_partitions_and_survive_a_sigkill(
    stack: dict[str, str], tmp_path: Path,
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_spawn(stack, logs[0]), _spawn(stack, logs[1])]
    try:
        _wait(lambda: all(_assigned(p) and _assigned(p)[-1] for p in logs), 60,
              "both warmers to own partitions")
        split = [set(_assigned(p)[-1]) for p in logs]
        assert split[0] and split[1] and not split[0] & split[1]
        assert split[0] | split[1] == set(range(PARTITIONS))

        total = 6000
        for start in range(0, total, 500):  # a stream, not a preloaded topic
            produce(stack["kafka"], stack["topic"], _events(start, start + 500))
            if start == 2500:
                procs[0].send_signal(signal.SIGKILL)
                assert procs[0].wait(10) == -signal.SIGKILL
            time.sleep(0.1)

        # the survivor takes the killed warmer's partitions after its session times out
        _wait(lambda: set(_assigned(logs[1])[-1]) == set(range(PARTITIONS)), 60, "takeover")
        _wait(lambda: _all_committed(stack), 60, "every offset committed")
        assert _missing_warms(stack, total) == []

        procs[1].send_signal(signal.SIGTERM)  # graceful stop with a final checkpoint
        assert procs[1].wait(30) == 0
        assert "stopped" in logs[1].read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_restarted_warmer_resumes_from_committed_offsets(stack: dict[str, str]) -> None:
    total, first = 3000, 1200
    produce(stack["kafka"], stack["topic"], _events(0, total))
    settings = settings_from({k: v for k, v in stack.items() if k.startswith("STREAM_WARMER_")})

    one = ServeApp(settings, build_baseline("nextkey", settings.strategy))
    assert one.run(max_messages=first).consumed == first
    done = committed(stack["kafka"], stack["group"], stack["topic"], PARTITIONS)
    assert sum(max(0, o) for o in done.values()) == first

    two = ServeApp(settings, build_baseline("nextkey", settings.strategy))
    stats = two.run(idle_timeout_s=3.0)
    assert stats.consumed == total - first  # nothing replayed after a clean stop
    assert _all_committed(stack)
    assert _missing_warms(stack, total) == []
