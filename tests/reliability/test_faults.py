"""Faults under load: a real serve over a steady stream while something breaks.

Every test drives ``serve`` over events produced while the fault happens
(``stack.SteadyStream``: ``nextkey``, keys stepping by 2 per tenant, so each event
``(tenant, k)`` must cause the warm ``(tenant, k + 1)``), samples the group's commits
all along (``stack.CommitMonitor``), and checks afterwards that

- no commit ever covered an event whose warm was not yet on ``warm-commands`` (the
  topic's ``LogAppendTime`` against the time the commit was seen);
- after recovery every partition is committed to its end (0 events unprocessed) and
  every event's warm is in its tenant's Redis queue and on the topic (0 lost).

Faults: two replicas SIGKILLed in turn at random moments while they checkpoint every
50 ms (a third one in the group finishes; each kill is also checked on its own: what
was committed by then had its warms everywhere);
the broker stopped and started again on its data (a private broker: never the shared
one); Redis stopped and started again (a private, append-only redis-server); the model
store unreachable while a new version is announced. READONLY and OOM Redis are in
``tests/integration/test_serve_redis_faults.py``.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import redis

from stream_warmer.cli import serve as serve_cli
from stream_warmer.settings import Settings
from stream_warmer.trainer.publish import ModelPublisher
from stream_warmer.trainer.store import DirStore
from stream_warmer.trainer.updates import publish_update
from tests.integration.serve_helpers import (
    OwnRedis,
    delete_group,
    free_port,
    metric,
    now_ms,
    require_redis_server,
    settings_from,
    wait_for,
)
from tests.reliability.conftest import Report
from tests.reliability.stack import (
    WARM_TOPIC_CONFIG,
    CommitMonitor,
    Outcome,
    PrivateKafka,
    Replica,
    SteadyStream,
    committed_now,
    create_topics,
    fault_env,
    tiny_artifact,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PARTITIONS, TENANTS, RATE = 3, 6, 300.0


@pytest.fixture
def prefix(redis_url: str, unique: Callable[[str], str]) -> Iterator[str]:
    """A uuid key prefix on the shared Redis; its keys are deleted afterwards."""
    name = unique("sw")
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{name}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def shared(kafka_bootstrap: str, prefix: str, topic_factory: Callable[..., str],
           unique: Callable[[str], str]) -> Iterator[dict[str, str]]:
    """uuid topics, group and key prefix on the shared broker and Redis; cleaned up."""
    topics = {"events": topic_factory("events", PARTITIONS),
              "warm": topic_factory("warm", 1, WARM_TOPIC_CONFIG), "dlq": topic_factory("dlq", 1)}
    names = {"group": unique("serve"), "prefix": prefix}
    yield {**{f"topic_{k}": v for k, v in topics.items()}, **names}
    delete_group(kafka_bootstrap, names["group"])


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    """A started broker of our own (stopped afterwards, its data with ``tmp_path``)."""
    (tmp_path / "kafka").mkdir()
    broker = PrivateKafka(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


def _topics(stack: dict[str, str]) -> dict[str, str]:
    return {k: stack[f"topic_{k}"] for k in ("events", "warm", "dlq")}


def _check(outcome: Outcome, committed: dict[int, int], monitor: CommitMonitor) -> int:
    """The assertions every test shares; returns the events lost (0 once they hold)."""
    assert outcome.commits_ahead(monitor.samples) == []
    assert outcome.unprocessed(committed) == []
    assert outcome.unwarmed() == []
    return outcome.lost(committed)


# ---------------------------------------------------------------------- 1. SIGKILL
KILLS = 2  # replicas killed one after the other; the next one in the group finishes


def test_replicas_killed_while_checkpointing_lose_nothing(
    kafka_bootstrap: str, redis_url: str, shared: dict[str, str], tmp_path: Path,
    reliability: Report,
) -> None:
    topics, group, prefix = _topics(shared), shared["group"], shared["prefix"]
    env = fault_env(kafka_bootstrap, redis_url, group, topics, prefix,
                    BATCH__CHECKPOINT_INTERVAL_S="0.05")
    stream = SteadyStream(kafka_bootstrap, topics["events"], TENANTS, PARTITIONS, RATE)
    monitor = CommitMonitor(kafka_bootstrap, group, topics["events"], PARTITIONS)
    rng = random.Random()
    kills: list[str] = []
    replica = Replica(env, tmp_path, "serve-0")
    try:
        replica.wait_up()
        stream.start()
        monitor.start()
        before: dict[int, int] = {}
        for n in range(1, KILLS + 1):
            wait_for(partial(_past, monitor, before), 45, f"{replica.name} to commit")
            moment = rng.uniform(0.2, 2.0)  # the random moment (a fault, not a wait)
            time.sleep(moment)
            replica.kill()
            ends = stream.delivered_ends()
            before = committed_now(kafka_bootstrap, group, topics["events"], PARTITIONS)
            # nothing writes now: every committed event's warm must be everywhere already
            snapshot = Outcome(kafka_bootstrap, topics, redis_url, prefix, stream.tenants)
            assert snapshot.unwarmed(below=before) == []
            behind = sum(ends.get(p, 0) - before[p] for p in range(PARTITIONS))
            kills.append(f"{moment:.2f} s into its commits, {max(behind, 0)} events uncommitted")
            replica = Replica(env, tmp_path, f"serve-{n}")
            replica.wait_up()
        wait_for(partial(_past, monitor, before), 45, f"{replica.name} to commit past the kill")
        stream.finish()
        ends = Outcome(kafka_bootstrap, topics, redis_url, prefix, ()).ends()
        wait_for(lambda: _latest(monitor) == ends, 45, f"{replica.name} to commit everything")
        assert replica.stop() == 0, replica.log_tail()
    finally:
        if replica.proc.poll() is None:
            replica.kill()
        stream.halt()
        monitor.finish()
    outcome = Outcome(kafka_bootstrap, topics, redis_url, prefix, stream.tenants)
    committed = committed_now(kafka_bootstrap, group, topics["events"], PARTITIONS)
    lost = _check(outcome, committed, monitor)
    reliability(load=f"{stream.describe(PARTITIONS)}, real serve (nextkey, subprocess)",
                faults=f"SIGKILL of {KILLS} serve replicas in turn, checkpointing every 50 ms, "
                       f"at random moments ({'; '.join(kills)}); each time a new replica "
                       "in the group took over",
                lost=lost)


# ---------------------------------------------------------------------- 2. broker restart
BROKER_DOWN_S = 4.0  # how long the broker stays down (the fault itself)


def test_serve_survives_a_broker_restart_and_loses_nothing(
    private_kafka: PrivateKafka, redis_url: str, prefix: str, unique: Callable[[str], str],
    tmp_path: Path, reliability: Report,
) -> None:
    kafka = private_kafka.bootstrap
    topics, group = create_topics(kafka, PARTITIONS), unique("serve")
    env = fault_env(kafka, redis_url, group, topics, prefix)
    stream = SteadyStream(kafka, topics["events"], TENANTS, PARTITIONS, RATE)
    monitor = CommitMonitor(kafka, group, topics["events"], PARTITIONS)
    replica = Replica(env, tmp_path, "serve")
    try:
        replica.wait_up()
        stream.start()
        monitor.start()
        wait_for(partial(_past, monitor, {}), 45, "serve's first commits")
        stopped = time.monotonic()
        private_kafka.stop()
        before = _latest(monitor)
        time.sleep(BROKER_DOWN_S)  # the outage; events keep coming into the producer
        assert replica.proc.poll() is None, replica.log_tail()
        private_kafka.start()
        outage_s = time.monotonic() - stopped
        wait_for(partial(_past, monitor, before), 60, "commits after the restart")
        stream.finish()
        ends = Outcome(kafka, topics, redis_url, prefix, ()).ends()
        wait_for(lambda: _latest(monitor) == ends, 45, "serve to commit every partition")
        assert replica.proc.poll() is None, replica.log_tail()  # it survived: no restart
        again = int(replica.metric("stream_warmer_events_total")) - stream.sent
        assert replica.stop() == 0, replica.log_tail()
    finally:
        if replica.proc.poll() is None:
            replica.kill()
        stream.halt()
        monitor.finish()
    outcome = Outcome(kafka, topics, redis_url, prefix, stream.tenants)
    lost = _check(outcome, committed_now(kafka, group, topics["events"], PARTITIONS), monitor)
    reliability(load=f"{stream.describe(PARTITIONS)}, real serve (nextkey, subprocess)",
                faults=f"the broker stopped (SIGTERM) and started again on its data, "
                       f"{outage_s:.0f} s without a broker; serve survived it (not restarted), "
                       f"{again:,} events consumed again",
                lost=lost)


# ---------------------------------------------------------------------- 3. Redis restart
REDIS_DOWN_S = 3.0


def test_serve_pauses_through_a_redis_restart_and_loses_nothing(
    kafka_bootstrap: str, shared: dict[str, str], tmp_path: Path, reliability: Report,
) -> None:
    require_redis_server()
    own = OwnRedis(tmp_path)  # append-only, fsync always: what was queued survives
    own.start()
    topics, group, prefix = _topics(shared), shared["group"], shared["prefix"]
    env = fault_env(kafka_bootstrap, own.url, group, topics, prefix)
    stream = SteadyStream(kafka_bootstrap, topics["events"], TENANTS, PARTITIONS, RATE)
    monitor = CommitMonitor(kafka_bootstrap, group, topics["events"], PARTITIONS)
    replica = Replica(env, tmp_path, "serve")
    try:
        replica.wait_up()
        stream.start()
        monitor.start()
        wait_for(partial(_past, monitor, {}), 45, "serve's first commits")
        stopped = time.monotonic()
        own.stop()
        wait_for(lambda: replica.metric("stream_warmer_paused") == 1, 20, "serve to pause")
        before = _latest(monitor)
        time.sleep(REDIS_DOWN_S)  # the outage; events keep coming
        assert replica.metric("stream_warmer_redis_up") == 0
        own.start()
        outage_s = time.monotonic() - stopped
        wait_for(lambda: replica.metric("stream_warmer_paused") == 0, 30, "serve to resume")
        wait_for(partial(_past, monitor, before), 45, "commits after the restart")
        stream.finish()
        ends = Outcome(kafka_bootstrap, topics, own.url, prefix, ()).ends()
        wait_for(lambda: _latest(monitor) == ends, 45, "serve to commit every partition")
        rehandled = int(replica.metric("stream_warmer_rehandled_events_total"))
        assert replica.stop() == 0, replica.log_tail()
        outcome = Outcome(kafka_bootstrap, topics, own.url, prefix, stream.tenants)
    finally:
        if replica.proc.poll() is None:
            replica.kill()
        stream.halt()
        monitor.finish()
        own.stop()
    committed = committed_now(kafka_bootstrap, group, topics["events"], PARTITIONS)
    lost = _check(outcome, committed, monitor)
    reliability(load=f"{stream.describe(PARTITIONS)}, real serve (nextkey, subprocess)",
                faults=f"Redis stopped and started again (append-only), {outage_s:.1f} s "
                       f"down; serve paused, resumed, {rehandled:,} events re-handled",
                lost=lost)


# ---------------------------------------------------------------------- 5. model store down
LSTM_RATE = 150.0  # one prediction per event (poll and batch of 1): a gentler load


def test_serve_keeps_its_model_while_the_store_is_down_and_loads_the_new_one_after(
    kafka_bootstrap: str, redis_url: str, shared: dict[str, str],
    topic_factory: Callable[..., str], tmp_path: Path, reliability: Report,
) -> None:
    """``serve`` exactly as the CLI wires it (in a thread, so that the watcher's counters,
    which serve's /metrics does not show, can be read), the LSTM from a ``dir`` store
    whose directory goes away (a shared volume unmounted) while a version is announced."""
    topics, group, prefix = _topics(shared), shared["group"], shared["prefix"]
    updates = topic_factory("updates", 1, {"cleanup.policy": "compact"})
    store_dir, unmounted = tmp_path / "models", tmp_path / "models-unmounted"
    port = free_port()
    env = fault_env(kafka_bootstrap, redis_url, group, topics, prefix,
                    STRATEGY__NAME="lstm", TOPICS__MODEL_UPDATES=updates, MODEL__STORE="dir",
                    MODEL__STORE_DIR=str(store_dir), MODEL__DEVICE="cpu",
                    MODEL__CPU_THREADS="1", MODEL__BUDGET_ONLINE="false",
                    POLICY__MIN_CONFIDENCE="0", BATCH__POLL_BATCH="1", BATCH__MAX_BATCH="1",
                    METRICS__PORT=str(port))
    settings = settings_from(env)
    store = DirStore(store_dir)
    v1 = ModelPublisher(store, settings.kafka, updates, settings.model.name).publish(
        tiny_artifact(0.0), {}, now_ms() - 60_000)
    # the trainer stores v2 and announces it once this replica's view of the store is gone
    v2 = ModelPublisher(store, settings.kafka, updates, settings.model.name,
                        publish=lambda *_: None).publish(tiny_artifact(0.5), {}, now_ms())
    stream = SteadyStream(kafka_bootstrap, topics["events"], TENANTS, PARTITIONS, LSTM_RATE)
    monitor = CommitMonitor(kafka_bootstrap, group, topics["events"], PARTITIONS)
    serving = _ServeThread(settings)
    rejected = _rejections()
    try:
        stream.start()
        serving.start()
        monitor.start()
        wait_for(lambda: _serves(port, v1.version) and _past(monitor, {}), 60, "v1 serving")
        store_dir.rename(unmounted)
        publish_update(settings.kafka, updates, v2)
        wait_for(lambda: _rejections() > rejected, 20, "the store_unavailable rejection")
        events = metric(port, "stream_warmer_events_total")
        wait_for(lambda: metric(port, "stream_warmer_events_total") >= events + 2 * LSTM_RATE
                 and _rejections() >= rejected + 3, 30,
                 "serve to go on serving while the watcher retries the fetch")
        attempts = int(_rejections() - rejected)
        assert _serves(port, v1.version) and metric(port, "stream_warmer_strategy_swaps_total") == 0
        unmounted.rename(store_dir)  # the volume is back
        wait_for(lambda: _serves(port, v2.version), 30, "the swap to v2 once the store is back")
        events = metric(port, "stream_warmer_events_total")
        wait_for(lambda: metric(port, "stream_warmer_events_total") >= events + LSTM_RATE,
                 30, "serve to go on with v2")
        stream.finish()
        assert serving.finish() == 0  # idle after the stream: a normal end
    finally:
        if unmounted.exists():
            unmounted.rename(store_dir)
        stream.halt()
        serving.finish()
        monitor.finish()
    outcome = Outcome(kafka_bootstrap, topics, redis_url, prefix, stream.tenants)
    lost = _check(outcome, committed_now(kafka_bootstrap, group, topics["events"], PARTITIONS),
                  monitor)
    _one_switch(outcome, v1.version, v2.version)
    reliability(load=f"{stream.describe(PARTITIONS)}, real serve (LSTM, the CLI's wiring)",
                faults=f"the model store (dir) unreachable while v2 was announced: "
                       f"{attempts} fetches rejected as store_unavailable, v1 kept serving; "
                       "v2 loaded once the store was back",
                lost=lost)


class _ServeThread(threading.Thread):
    """``stream_warmer.cli.serve.run`` until 5 s without a record."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="serve-cli")
        self._settings = settings
        self.result: int | BaseException | None = None

    def run(self) -> None:
        args = argparse.Namespace(max_messages=None, idle_timeout=5.0)
        try:
            self.result = serve_cli.run(args, self._settings)
        except BaseException as exc:  # reported by finish()
            self.result = exc

    def finish(self) -> int | BaseException | None:
        if self.ident is not None:
            self.join(60)
            assert not self.is_alive(), "serve did not stop"
        return self.result


def _rejections() -> float:
    from prometheus_client import REGISTRY

    labels = {"result": "rejected", "reason": "store_unavailable"}
    return REGISTRY.get_sample_value("stream_warmer_model_updates_total", labels) or 0.0


def _serves(port: int, version: str) -> bool:
    return metric(port, "stream_warmer_model_version_info", version=version) == 1


def _one_switch(outcome: Outcome, v1: str, v2: str) -> None:
    """Per partition, in offset order: v1's commands, then v2's, never back."""
    rows: dict[int, list[tuple[int, str]]] = {}
    for warm in outcome.warms:
        _topic, part, offset = str(warm["source"]).rsplit("/", 2)
        rows.setdefault(int(part), []).append((int(offset), str(warm["model_version"])))
    for partition, seen in rows.items():
        versions = [v for _o, v in sorted(seen)]
        assert versions[0] == v1 and versions[-1] == v2, partition
        switch = versions.index(v2)
        assert set(versions[:switch]) == {v1} and set(versions[switch:]) == {v2}, partition


def _past(monitor: CommitMonitor, offsets: dict[int, int]) -> bool:
    """Every partition committed beyond ``offsets``."""
    latest = _latest(monitor)
    return all(latest.get(p, 0) > offsets.get(p, 0) for p in range(PARTITIONS))


def _latest(monitor: CommitMonitor) -> dict[int, int]:
    return monitor.samples[-1][1] if monitor.samples else {}
