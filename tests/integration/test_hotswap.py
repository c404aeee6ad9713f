"""Hot swap on the real broker and Redis: publish, swap while serving, reject, rollback.

The model here is the tests' "key + delta" stand-in (``tests.unit.trainer_fakes``): its
artifact goes through the real store (Redis, content-addressed), the real
``model-updates`` topic and the real watcher, so only the maths is trivial.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stream_warmer.serve.app import ServeApp
from stream_warmer.settings import KafkaSettings, Settings
from stream_warmer.strategies import build_baseline
from stream_warmer.trainer.publish import ModelPublisher
from stream_warmer.trainer.signing import ManifestSigner
from stream_warmer.trainer.store import RedisStore
from stream_warmer.trainer.updates import ModelUpdate, publish_update
from stream_warmer.trainer.watcher import ModelWatcher
from tests.integration.serve_helpers import (
    committed,
    delete_group,
    event_bytes,
    high_watermarks,
    produce,
    read_all,
    serve_env,
    settings_from,
)
from tests.unit.trainer_fakes import delta_artifact, load_delta

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., str],
    unique: Callable[[str], str],
) -> Iterator[dict[str, Any]]:
    topics = {
        "events": topic_factory("events", 1),
        "warm": topic_factory("warm", 1),
        "dlq": topic_factory("dlq", 1),
    }
    updates = topic_factory("updates", 1, {"cleanup.policy": "compact"})
    group, prefix = unique("serve"), unique("sw")
    env = serve_env(
        kafka_bootstrap,
        redis_url,
        group,
        topics,
        prefix,
        TOPICS__MODEL_UPDATES=updates,
        POLICY__MIN_CONFIDENCE="0.0",
        POLICY__ADAPTIVE_THRESHOLD="false",
        POLICY__DEDUP_TTL_S="0.001",
        BATCH__MAX_DELAY_MS="5",
    )
    settings = settings_from(env)
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix)
    publisher = ModelPublisher(store, settings.kafka, updates, settings.model.name)
    yield {
        "settings": settings,
        "publisher": publisher,
        "store": store,
        "group": group,
        "kafka": kafka_bootstrap,
        "topics": topics,
        "redis": client,
        "prefix": prefix,
    }
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)


def _watcher(stack: dict[str, Any]) -> ModelWatcher:
    s: Settings = stack["settings"]
    watcher = ModelWatcher(
        s.kafka, s.topics.model_updates, s.model.name, stack["store"], load_delta
    )
    watcher.start()
    assert watcher.wait_ready(30)
    return watcher


def _wait(cond: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Feeder(threading.Thread):
    """Produces one event per tenant every few ms until stopped; counts them."""

    def __init__(self, kafka: str, topic: str) -> None:
        super().__init__(daemon=True)
        self._kafka, self._topic = kafka, topic
        self.stop_flag = threading.Event()
        self.sent = 0

    def run(self) -> None:
        key = 1000
        while not self.stop_flag.is_set():
            key += 1
            self.sent += produce(
                self._kafka, self._topic, [("acme", event_bytes("acme", str(key)))]
            )
            time.sleep(0.005)


def test_running_warmer_swaps_without_stopping(stack: dict[str, Any]) -> None:
    v1 = stack["publisher"].publish(delta_artifact(3), {}, 1_000_000_000_000)
    watcher = _watcher(stack)
    initial = watcher.strategy_source()
    assert initial is not None and initial.model_version == v1.version
    app = ServeApp(stack["settings"], initial, strategy_source=watcher.strategy_source)
    feeder = Feeder(stack["kafka"], stack["topics"]["events"])
    runner = threading.Thread(target=app.run, kwargs={"idle_timeout_s": 3.0}, daemon=True)
    try:
        feeder.start()
        runner.start()
        _wait(lambda: app.stats.commands >= 20)
        v2 = stack["publisher"].publish(delta_artifact(5), {}, 1_000_000_100_000)
        _wait(lambda: watcher.current == v2)
        before = app.stats.commands
        _wait(lambda: app.stats.commands >= before + 20)
    finally:
        feeder.stop_flag.set()
        feeder.join()
        runner.join(30)
        watcher.stop()
    assert not runner.is_alive()
    commands = read_all(stack["kafka"], stack["topics"]["warm"], app.stats.commands)
    versions = [v["model_version"] for _k, v, _p, _o in commands]
    assert versions[0] == v1.version and versions[-1] == v2.version
    switch = versions.index(v2.version)
    assert set(versions[:switch]) == {v1.version} and set(versions[switch:]) == {v2.version}
    # the new model's predictions follow its weights: key + 5 instead of key + 3
    # (the feeder's key at offset o is 1001 + o)
    for _k, cmd, _p, _o in (commands[0], commands[-1]):
        offset = int(cmd["source"].rsplit("/", 1)[1])
        delta = 3 if cmd["model_version"] == v1.version else 5
        assert cmd["key"] == str(1001 + offset + delta)
    assert app.stats.consumed == feeder.sent
    assert committed(
        stack["kafka"], stack["group"], stack["topics"]["events"], 1
    ) == high_watermarks(stack["kafka"], stack["topics"]["events"], 1)


def _tampering_publisher(stack: dict[str, Any]) -> ModelPublisher:
    """A publisher whose stored weights are swapped for other bytes before the announce.

    The tampering must happen before the update is on the topic: a watcher that reads
    the record first would fetch the still-intact artifact and (rightly) load it.
    """
    s: Settings = stack["settings"]
    store: RedisStore = stack["store"]

    def tamper_then_announce(kafka: KafkaSettings, topic: str, update: ModelUpdate) -> None:
        stack["redis"].set(store.key(update.sha256), delta_artifact(8).weights)
        publish_update(kafka, topic, update)

    return ModelPublisher(
        store, s.kafka, s.topics.model_updates, s.model.name, publish=tamper_then_announce
    )


def test_tampered_artifacts_are_rejected_and_old_version_serves(stack: dict[str, Any]) -> None:
    publisher = stack["publisher"]
    good = publisher.publish(delta_artifact(3), {}, 1_000_000_000_000)
    watcher = _watcher(stack)
    try:
        assert watcher.strategy_source() is not None
        wrong_hash = _tampering_publisher(stack).publish(delta_artifact(7), {}, 1_000_000_100_000)
        wrong_shapes = publisher.publish(delta_artifact(3, n=4), {}, 1_000_000_200_000)
        nan = publisher.publish(delta_artifact(float("nan")), {}, 1_000_000_300_000)
        _wait(lambda: len(watcher.rejected) == 3)
        assert [v for v, _r in watcher.rejected] == [
            wrong_hash.version,
            wrong_shapes.version,
            nan.version,
        ]
        assert "hash mismatch" in watcher.rejected[0][1]
        assert "non-finite" in watcher.rejected[2][1]
        assert watcher.current == good
        assert watcher.strategy_source() is None
    finally:
        watcher.stop()


def test_late_replica_serves_latest_from_first_batch(stack: dict[str, Any]) -> None:
    publisher = stack["publisher"]
    publisher.publish(delta_artifact(3), {}, 1_000_000_000_000)
    v2 = publisher.publish(delta_artifact(4), {}, 1_000_000_100_000)
    produce(
        stack["kafka"],
        stack["topics"]["events"],
        [("acme", event_bytes("acme", str(100 + i))) for i in range(5)],
    )
    watcher = _watcher(stack)
    try:
        strategy = watcher.strategy_source() or build_baseline("markov", stack["settings"].strategy)
        app = ServeApp(stack["settings"], strategy, strategy_source=watcher.strategy_source)
        app.run(idle_timeout_s=2.0)
    finally:
        watcher.stop()
    commands = read_all(stack["kafka"], stack["topics"]["warm"], app.stats.commands)
    assert commands, "no warm commands"
    assert {v["model_version"] for _k, v, _p, _o in commands} == {v2.version}
    assert {v["key"] for _k, v, _p, _o in commands} <= {str(100 + i + 4) for i in range(5)}


def test_rollback_makes_replicas_serve_the_named_version(stack: dict[str, Any]) -> None:
    publisher = stack["publisher"]
    v1 = publisher.publish(delta_artifact(3), {}, 1_000_000_000_000)
    v2 = publisher.publish(delta_artifact(4), {}, 1_000_000_100_000)
    running = _watcher(stack)
    try:
        assert running.current == v2
        publisher.rollback(v1.version)
        _wait(lambda: running.current == v1)
        swapped = running.strategy_source()
        assert swapped is not None and swapped.model_version == v1.version
        fresh = _watcher(stack)  # a replica started after the rollback
        try:
            assert fresh.current == v1
        finally:
            fresh.stop()
    finally:
        running.stop()
    assert [u.version for u in publisher.store.versions(publisher.name)] == [v1.version, v2.version]


def test_replica_with_a_key_rejects_unsigned_and_swaps_to_signed(stack: dict[str, Any]) -> None:
    s: Settings = stack["settings"]
    key = ManifestSigner(b"integration-signing-key")
    signed_store = RedisStore(stack["redis"], stack["prefix"], key)
    signing = ModelPublisher(signed_store, s.kafka, s.topics.model_updates, s.model.name)
    first = signing.publish(delta_artifact(3), {}, 1_000_000_000_000)
    replica = ModelWatcher(s.kafka, s.topics.model_updates, s.model.name, signed_store, load_delta)
    replica.start()
    try:
        assert replica.wait_ready(30) and replica.current == first
        assert replica.strategy_source() is not None
        unsigned = stack["publisher"].publish(delta_artifact(4), {}, 1_000_000_100_000)
        _wait(lambda: len(replica.rejected) == 1)
        assert replica.rejected[0][0] == unsigned.version
        assert "unsigned" in replica.rejected[0][1]
        assert replica.current == first and replica.strategy_source() is None
        signed = signing.publish(delta_artifact(5), {}, 1_000_000_200_000)
        _wait(lambda: replica.current == signed)
        swapped = replica.strategy_source()
        assert swapped is not None and swapped.model_version == signed.version
    finally:
        replica.stop()
    # the store's keys are outside every tenant's: none under {prefix}:model:
    keys = {k.decode() for k in stack["redis"].scan_iter(f"{stack['prefix']}:*")}
    assert keys and all(k.startswith(signed_store.namespace) for k in keys)
    assert signed_store.signature_key(signed.manifest_sha256) in keys
