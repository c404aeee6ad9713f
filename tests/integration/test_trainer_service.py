"""The trainer process on the real broker and Redis: consume, train, gate, publish."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stream_warmer.events import encode
from stream_warmer.settings import Settings, load_settings
from stream_warmer.trainer.lstm import lstm_loader, lstm_trainer
from stream_warmer.trainer.publish import ModelPublisher
from stream_warmer.trainer.rounds import TrainingRound
from stream_warmer.trainer.service import TrainerService
from stream_warmer.trainer.store import RedisStore
from stream_warmer.trainer.watcher import ModelWatcher
from tests.integration.serve_helpers import delete_group, produce
from tests.unit.trainer_fakes import load_delta, stride_events, train_delta

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., str],
    unique: Callable[[str], str],
) -> Iterator[dict[str, Any]]:
    events = topic_factory("events", 2)
    updates = topic_factory("updates", 1, {"cleanup.policy": "compact"})
    group, prefix = unique("trainer"), unique("sw")
    env = {
        "STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_WARMER_TOPICS__ACCESS_EVENTS": events,
        "STREAM_WARMER_TOPICS__MODEL_UPDATES": updates,
        "STREAM_WARMER_REDIS__URL": redis_url,
        "STREAM_WARMER_REDIS__KEY_PREFIX": prefix,
        "STREAM_WARMER_TRAINER__CONSUMER_GROUP": group,
        "STREAM_WARMER_TRAINER__RETRAIN_EVERY_EVENTS": "3000",
        "STREAM_WARMER_TRAINER__MIN_EVENTS": "1000",
        "STREAM_WARMER_TRAINER__GATE_CACHE_FRACS": "[0.1]",
        "STREAM_WARMER_TRAINER__EPOCHS": "2",
        "STREAM_WARMER_MODEL__HIDDEN": "16",
        "STREAM_WARMER_MODEL__EMBED_DIM": "8",
        "STREAM_WARMER_MODEL__LAYERS": "1",
        "STREAM_WARMER_MODEL__DEVICE": "cpu",
        "STREAM_WARMER_MODEL__CPU_THREADS": "1",
    }
    settings = load_settings(None, env)
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix)
    yield {
        "settings": settings,
        "env": env,
        "store": store,
        "kafka": kafka_bootstrap,
        "events": events,
    }
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    delete_group(kafka_bootstrap, group)


def _service(
    stack: dict[str, Any], settings: Settings, train: Any, load: Any
) -> tuple[TrainerService, ModelPublisher]:
    publisher = ModelPublisher(
        stack["store"], settings.kafka, settings.topics.model_updates, settings.model.name
    )
    rnd = TrainingRound(settings.trainer, settings.strategy, publisher, train, load)
    return TrainerService(
        settings.kafka, settings.topics.access_events, settings.trainer, rnd
    ), publisher


def _produce_pattern(stack: dict[str, Any], n: int) -> None:
    produce(
        stack["kafka"], stack["events"], [(e.tenant, encode(e)) for e in stride_events(n, delta=3)]
    )


def test_trainer_learns_the_pattern_passes_its_gate_and_publishes(stack: dict[str, Any]) -> None:
    _produce_pattern(stack, 3000)
    service, publisher = _service(stack, stack["settings"], train_delta, load_delta)
    assert service.run(max_rounds=1, idle_timeout_s=20) == 1
    result = service.results[0]
    assert result.outcome == "published", result.detail
    assert result.gate is not None and result.gate.candidate.hit_ratio > 0.9
    assert result.gate.baseline is not None
    assert result.gate.candidate.hit_ratio > result.gate.baseline.hit_ratio
    assert publisher.live() == result.update
    assert [u.version for u in stack["store"].versions(publisher.name)] == [result.update.version]
    manifest = stack["store"].fetch(result.update).manifest
    assert manifest["gate"]["gate_passed"] is True

    # a second round with nothing better than the live model publishes nothing
    _produce_pattern(stack, 3000)
    service2, _ = _service(stack, stack["settings"], train_delta, load_delta)
    assert service2.run(max_rounds=1, idle_timeout_s=20) == 1
    assert service2.results[0].outcome == "rejected"
    assert service2.results[0].gate is not None and service2.results[0].gate.live is not None
    assert publisher.live() == result.update


def test_lstm_round_publishes_an_artifact_a_replica_loads(stack: dict[str, Any]) -> None:
    # margin -1: this test is about the LSTM path through store, topic and watcher,
    # not about the LSTM's quality on the pattern
    env = {**stack["env"], "STREAM_WARMER_TRAINER__PROMOTE_MARGIN": "-1"}
    settings = load_settings(None, env)
    _produce_pattern(stack, 3000)
    service, _ = _service(stack, settings, lstm_trainer(settings), lstm_loader(settings))
    assert service.run(max_rounds=1, idle_timeout_s=30) == 1
    result = service.results[0]
    assert result.outcome == "published", result.detail
    assert result.update is not None and result.update.arch["hidden"] == 16
    watcher = ModelWatcher(
        settings.kafka,
        settings.topics.model_updates,
        settings.model.name,
        stack["store"],
        lstm_loader(settings),
    )
    watcher.start()
    try:
        assert watcher.wait_ready(30)
        strategy = watcher.strategy_source()
        assert strategy is not None and strategy.name == "lstm"
        assert strategy.model_version == result.update.version
    finally:
        watcher.stop()
