"""End to end through the real commands: ``train`` publishes, ``serve`` hot-swaps.

``python -m stream_warmer train`` and ``python -m stream_warmer serve`` (strategy
``lstm``) run as subprocesses on uuid topics, configured only by environment
variables, over the first events of the real trace shipped in the package (cache2k
orm-busy). The trainer runs one round with the shipped model defaults and its gate
opened (``promote_margin = -1``: this test is about publication and the swap, not about
how well a model trained on ~50k events does; on this slice the first round's
candidate often loses to Markov and the default gate rightly rejects it — the gate
itself is unit-tested); the warmer starts on the fallback baseline and must swap to
the published version without stopping. Then ``model list|show|rollback``
are run against the live stack.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_warmer.data import SAMPLE_TRACE
from stream_warmer.evaluation.traces import read_trace
from stream_warmer.replay import replay
from stream_warmer.settings import load_settings
from stream_warmer.strategies.base import BASELINE_VERSION
from stream_warmer.trainer.publish import ModelPublisher
from stream_warmer.trainer.store import RedisStore
from stream_warmer.trainer.updates import ModelUpdate, read_updates
from tests.integration.serve_helpers import (
    committed,
    delete_group,
    free_port,
    high_watermarks,
    metric,
    read_all,
    serve_env,
    start_command,
    stop_process,
    wait_for,
)
from tests.traces import REPO

pytestmark = pytest.mark.integration
FIRST, SECOND = 60_000, 3_000  # events before the round / after the publication
PARTITIONS = 2


@pytest.fixture
def live(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., str],
    unique: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    """Topics, environments and Redis prefix of one trainer + one warmer."""
    trace = SAMPLE_TRACE
    topics = {
        "events": topic_factory("events", PARTITIONS),
        "warm": topic_factory("warm", 1),
        "dlq": topic_factory("dlq", 1),
    }
    updates = topic_factory("updates", 1, {"cleanup.policy": "compact"})
    group, trainer_group, prefix = unique("serve"), unique("trainer"), unique("sw")
    common = {
        **serve_env(kafka_bootstrap, redis_url, group, topics, prefix),
        "STREAM_WARMER_TOPICS__MODEL_UPDATES": updates,
        "STREAM_WARMER_MODEL__DEVICE": "cpu",
        "STREAM_WARMER_MODEL__CPU_THREADS": "1",
        "STREAM_WARMER_METRICS__LOG_FORMAT": "text",
    }
    serve_port = free_port()
    envs = {
        "serve": {**common, "STREAM_WARMER_STRATEGY__NAME": "lstm",
                  "STREAM_WARMER_METRICS__PORT": str(serve_port)},
        "train": {**common, "STREAM_WARMER_TRAINER__CONSUMER_GROUP": trainer_group,
                  "STREAM_WARMER_TRAINER__RETRAIN_EVERY_EVENTS": "50000",
                  "STREAM_WARMER_TRAINER__PROMOTE_MARGIN": "-1"},
    }
    client = redis.Redis.from_url(redis_url)
    yield {"envs": envs, "kafka": kafka_bootstrap, "topics": topics, "group": group,
           "trace": trace, "port": serve_port, "logs": tmp_path, "prefix": prefix, "redis": client}
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)
    delete_group(kafka_bootstrap, trainer_group)


def _replay(live: dict[str, Any], start: int, n: int, rate: float | None = None) -> int:
    events = itertools.islice(read_trace(live["trace"]), start, start + n)
    return replay(events, {"bootstrap.servers": live["kafka"]}, live["topics"]["events"], rate)


def _cli(live: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "stream_warmer", "model", *args],
        cwd=REPO, env={**os.environ, **live["envs"]["serve"]},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _published(live: dict[str, Any]) -> list[ModelUpdate]:
    s = load_settings(None, live["envs"]["serve"])
    return read_updates(s.kafka, s.topics.model_updates, s.model.name)


def test_train_publishes_and_serve_swaps_through_the_commands(live: dict[str, Any]) -> None:
    serve = start_command("serve", live["envs"]["serve"], live["logs"])
    train = start_command("train", live["envs"]["train"], live["logs"], "--max-rounds", "1")
    port = live["port"]
    try:
        wait_for(lambda: metric(port, "stream_warmer_events_total") >= 0, 30, "serve /metrics")
        assert _replay(live, 0, FIRST) == FIRST
        wait_for(lambda: train.poll() is not None, 75, "the trainer's round")
        train_log = (live["logs"] / "train.log").read_text()
        assert train.returncode == 0, train_log[-3000:]
        updates = _published(live)
        assert len(updates) == 1, train_log[-3000:]
        version = updates[0].version
        assert updates[0].metrics["gate_passed"] is True
        wait_for(lambda: metric(port, "stream_warmer_strategy_swaps_total") >= 1, 20, "the swap")
        # paced, so that the warmer predicts often (unpaced, whole polls coalesce)
        assert _replay(live, FIRST, SECOND, rate=1500) == SECOND
        total = FIRST + SECOND
        wait_for(lambda: metric(port, "stream_warmer_events_total") >= total, 30, "consumption")
        warms = int(metric(port, "stream_warmer_warm_commands_total"))
        _model_commands(live, version)
    finally:
        train_rc, serve_rc = stop_process(train), stop_process(serve)
    serve_log = (live["logs"] / "serve.log").read_text()
    assert serve_rc == 0 and "serve finished" in serve_log, serve_log[-3000:]
    assert train_rc == 0
    assert "strategy swapped" in serve_log
    _assert_commands(live, warms, version)
    events, kafka = live["topics"]["events"], live["kafka"]
    highs = high_watermarks(kafka, events, PARTITIONS)
    assert sum(highs.values()) == FIRST + SECOND
    assert committed(kafka, live["group"], events, PARTITIONS) == highs


def _assert_commands(live: dict[str, Any], warms: int, version: str) -> None:
    """Fallback commands before the swap, the new version's after it (per partition)."""
    assert warms > 0
    commands = read_all(live["kafka"], live["topics"]["warm"], warms)
    assert len(commands) >= warms
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for _k, cmd, _p, _o in commands:
        _topic, part, offset = cmd["source"].rsplit("/", 2)
        by_partition.setdefault(int(part), []).append((int(offset), cmd["model_version"]))
    seen = set()
    for rows in by_partition.values():
        rows.sort()
        versions = [v for _o, v in rows]
        seen |= set(versions)
        if version in versions:  # one switch, never back
            switch = versions.index(version)
            assert set(versions[switch:]) == {version}, "a command went back to the fallback"
    assert seen == {BASELINE_VERSION, version}


def _model_commands(live: dict[str, Any], v1: str) -> None:
    """``model list|show|rollback`` against the live stack, while serve runs."""
    port = live["port"]
    listed = _cli(live, "list").stdout
    assert f"* {v1}" in listed
    assert v1 in _cli(live, "show").stdout
    # a second version to roll back from: the same weights announced again under a
    # newer version (what an operator's manual re-publication would look like)
    s = load_settings(None, live["envs"]["serve"])
    store = RedisStore(live["redis"], live["prefix"])
    publisher = ModelPublisher(store, s.kafka, s.topics.model_updates, s.model.name)
    first = publisher.find(v1)
    v2 = publisher.publish(store.fetch(first), {}, first.created_at + 60_000).version
    wait_for(lambda: metric(port, "stream_warmer_strategy_swaps_total") >= 2, 20, "swap to v2")
    assert f"rolled back {s.model.name}: {v2} -> {v1}" in _cli(live, "rollback", v1).stdout
    wait_for(lambda: metric(port, "stream_warmer_strategy_swaps_total") >= 3, 20, "the rollback")
    assert [u.version for u in _published(live)][-1] == v1
    assert f"* {v1}" in _cli(live, "list").stdout
