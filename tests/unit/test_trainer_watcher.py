"""Watcher checks and mailbox, and one training round, without Kafka or Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

from stream_warmer.errors import SinkUnavailableError
from stream_warmer.settings import KafkaSettings, StrategySettings, TrainerSettings
from stream_warmer.trainer.buffer import EventBuffer
from stream_warmer.trainer.publish import ModelPublisher
from stream_warmer.trainer.rounds import TrainingRound
from stream_warmer.trainer.signing import ManifestSigner, SignatureError
from stream_warmer.trainer.store import Artifact, DirStore, ModelStore
from stream_warmer.trainer.updates import ModelUpdate
from stream_warmer.trainer.watcher import ModelWatcher
from tests.unit.trainer_fakes import delta_artifact, load_delta, stride_events, train_delta


class MemPublisher(ModelPublisher):
    """A publisher whose topic is a list."""

    def __init__(self, store: DirStore) -> None:
        self.topic: list[ModelUpdate] = []
        super().__init__(
            store, KafkaSettings(), "updates", "m", publish=lambda _k, _t, u: self.topic.append(u)
        )

    def history(self, timeout_s: float = 10.0) -> list[ModelUpdate]:
        return list(self.topic)


@pytest.fixture
def publisher(tmp_path: Path) -> MemPublisher:
    return MemPublisher(DirStore(tmp_path))


@pytest.fixture
def watcher(publisher: MemPublisher) -> ModelWatcher:
    return ModelWatcher(KafkaSettings(), "updates", "m", publisher.store, load_delta)


def test_good_version_is_handed_over_once(publisher: MemPublisher, watcher: ModelWatcher) -> None:
    update = publisher.publish(delta_artifact(3), {"gate_passed": True}, 1_000)
    assert watcher.apply(update)
    strategy = watcher.strategy_source()
    assert strategy is not None and strategy.model_version == update.version
    assert watcher.strategy_source() is None
    assert not watcher.apply(update)  # same version again: nothing to do
    assert watcher.current == update


def _publish_raw(publisher: MemPublisher, artifact: Artifact, at: int) -> ModelUpdate:
    return publisher.publish(artifact, {}, at)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: delta_artifact(3, n=2), id="wrong-shapes"),
        pytest.param(lambda: delta_artifact(float("nan")), id="nan-weights"),
        pytest.param(
            lambda: Artifact(b"not safetensors", delta_artifact(3).manifest), id="garbage-weights"
        ),
    ],
)
def test_bad_artifacts_are_rejected_and_old_model_stays(
    publisher: MemPublisher, watcher: ModelWatcher, bad: Any
) -> None:
    good = publisher.publish(delta_artifact(3), {}, 1_000)
    assert watcher.apply(good)
    assert watcher.strategy_source() is not None
    broken = publisher.publish(bad(), {}, 2_000)
    assert not watcher.apply(broken)
    assert watcher.strategy_source() is None
    assert watcher.current == good
    assert watcher.rejected[-1][0] == broken.version


def test_wrong_hash_is_rejected(publisher: MemPublisher, watcher: ModelWatcher) -> None:
    update = publisher.publish(delta_artifact(3), {}, 1_000)
    publisher.store.path(update.sha256).write_bytes(delta_artifact(4).weights)
    assert not watcher.apply(update)
    assert "hash mismatch" in watcher.rejected[-1][1]
    assert watcher.current is None


def test_arch_in_update_must_match_manifest(publisher: MemPublisher, watcher: ModelWatcher) -> None:
    update = publisher.publish(delta_artifact(3), {}, 1_000)
    forged = ModelUpdate(
        **{
            **{f: getattr(update, f) for f in update.__struct_fields__},
            "arch": {"kind": "delta", "n": 9},
        }
    )
    assert not watcher.apply(forged)
    assert "architecture" in watcher.rejected[-1][1]


def test_nan_check_sees_every_tensor() -> None:
    from stream_warmer.errors import ModelError
    from stream_warmer.trainer.checks import check_weights

    weights = save({"a": torch.zeros(3), "b": torch.tensor([1.0, float("inf")])})
    with pytest.raises(ModelError, match="'b'"):
        check_weights(weights)
    assert check_weights(save({"a": torch.zeros(2, 3)})) == {"a": (2, 3)}


def _rejections(reason: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"result": "rejected", "reason": reason}
    return REGISTRY.get_sample_value("stream_warmer_model_updates_total", labels) or 0.0


def test_a_replica_with_a_key_rejects_unsigned_and_wrongly_signed_versions(
    tmp_path: Path,
) -> None:
    trainer = MemPublisher(DirStore(tmp_path, ManifestSigner(b"t" * 16)))
    good = trainer.publish(delta_artifact(3), {}, 1_000)
    replica = DirStore(tmp_path, ManifestSigner(b"t" * 16))
    watcher = ModelWatcher(KafkaSettings(), "updates", "m", replica, load_delta)
    assert watcher.apply(good) and watcher.strategy_source() is not None
    before = _rejections("unsigned"), _rejections("bad_signature")
    unsigned = MemPublisher(DirStore(tmp_path)).publish(delta_artifact(4), {}, 2_000)
    forged = MemPublisher(DirStore(tmp_path, ManifestSigner(b"x" * 16)))
    wrong_key = forged.publish(delta_artifact(5), {}, 3_000)
    assert not watcher.apply(unsigned)
    assert not watcher.apply(wrong_key)
    assert [v for v, _r in watcher.rejected] == [unsigned.version, wrong_key.version]
    assert "unsigned" in watcher.rejected[0][1] and "bad signature" in watcher.rejected[1][1]
    assert (_rejections("unsigned"), _rejections("bad_signature")) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert watcher.current == good and watcher.strategy_source() is None


def test_without_a_key_signed_and_unsigned_versions_load(tmp_path: Path) -> None:
    signed = MemPublisher(DirStore(tmp_path, ManifestSigner(b"t" * 16)))
    watcher = ModelWatcher(KafkaSettings(), "updates", "m", DirStore(tmp_path), load_delta)
    assert watcher.apply(signed.publish(delta_artifact(3), {}, 1_000))
    assert watcher.apply(MemPublisher(DirStore(tmp_path)).publish(delta_artifact(4), {}, 2_000))


def test_rollback_with_a_key_refuses_an_unsigned_version(tmp_path: Path) -> None:
    old = MemPublisher(DirStore(tmp_path)).publish(delta_artifact(3), {}, 1_000)
    keyed = MemPublisher(DirStore(tmp_path, ManifestSigner(b"t" * 16)))
    signed = keyed.publish(delta_artifact(4), {}, 2_000)
    with pytest.raises(SignatureError, match="unsigned"):
        keyed.rollback(old.version)
    assert keyed.topic == [signed]
    again = keyed.publish(delta_artifact(5), {}, 3_000)
    assert keyed.rollback(signed.version) == signed  # the registered, signed update as is
    assert keyed.topic == [signed, again, signed]


def test_update_fields_must_match_the_manifest(
    publisher: MemPublisher, watcher: ModelWatcher
) -> None:
    update = publisher.publish(delta_artifact(3), {}, 1_000)
    fields = {f: getattr(update, f) for f in update.__struct_fields__}
    assert not watcher.apply(ModelUpdate(**{**fields, "vocab_version": "other"}))
    assert "vocab_version" in watcher.rejected[-1][1]
    assert watcher.apply(update)


def _round(publisher: MemPublisher, margin: float = 0.0) -> TrainingRound:
    settings = TrainerSettings(min_events=100, gate_cache_fracs=(0.1,), promote_margin=margin)
    return TrainingRound(
        settings,
        StrategySettings(),
        publisher,
        train_delta,
        load_delta,
        wall_ms=lambda: 1_700_000_000_000,
    )


def _frame(n: int) -> Any:
    buf = EventBuffer(10_000)
    buf.extend(stride_events(n, delta=3))
    return buf.frame()


def test_round_publishes_then_rejects_an_equal_candidate(publisher: MemPublisher) -> None:
    first = _round(publisher)(_frame(2000))
    assert first.outcome == "published", first.detail
    assert first.update is not None and publisher.topic == [first.update]
    manifest = publisher.store.fetch(first.update).manifest
    assert manifest["gate"]["gate_passed"] is True
    assert manifest["gate"]["candidate_hit_ratio"] > 0.9
    assert first.update.metrics["best_baseline"] in {"popularity", "markov", "nextkey"}
    second = _round(publisher)(_frame(2000))
    assert second.outcome == "rejected"
    assert second.gate is not None and second.gate.live is not None
    assert len(publisher.topic) == 1


def test_round_skips_small_buffers_and_survives_training_errors(publisher: MemPublisher) -> None:
    assert _round(publisher)(_frame(50)).outcome == "skipped"

    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    rnd = _round(publisher)
    rnd.train = broken
    result = rnd(_frame(2000))
    assert result.outcome == "failed" and "boom" in result.detail


def test_rollback_republishes_a_registered_version(publisher: MemPublisher) -> None:
    v1 = publisher.publish(delta_artifact(3), {}, 1_000_000)
    v2 = publisher.publish(delta_artifact(4), {}, 2_000_000)
    assert publisher.live() == v2
    assert publisher.rollback(v1.version) == v1
    assert publisher.live() == v1
    from stream_warmer.errors import ModelError

    with pytest.raises(ModelError, match="no registered version"):
        publisher.rollback("nope")


# ---------------------------------------------------------------------- store unavailable
class FlakyStore:
    """The publisher's store as a replica sees it: unreachable while ``down``."""

    def __init__(self, inner: ModelStore) -> None:
        self.inner, self.down, self.fetches = inner, False, 0

    def fetch(self, update: ModelUpdate) -> Artifact:
        self.fetches += 1
        if self.down:
            raise SinkUnavailableError("model store (Redis) unavailable: connection refused")
        return self.inner.fetch(update)

    def put(self, artifact: Artifact) -> Any:
        return self.inner.put(artifact)

    def register(self, update: ModelUpdate) -> None:
        self.inner.register(update)

    def versions(self, name: str) -> list[ModelUpdate]:
        return self.inner.versions(name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _flaky_watcher(publisher: MemPublisher) -> tuple[ModelWatcher, FlakyStore, Clock]:
    store, clock = FlakyStore(publisher.store), Clock()
    watcher = ModelWatcher(KafkaSettings(), "updates", "m", store, load_delta,
                           retry_first_s=1.0, retry_max_s=4.0, clock=clock)
    return watcher, store, clock


def test_a_version_the_store_cannot_deliver_is_retried_until_it_loads(
    publisher: MemPublisher,
) -> None:
    watcher, store, clock = _flaky_watcher(publisher)
    v1 = publisher.publish(delta_artifact(3), {}, 1_000)
    assert watcher.receive(v1) and watcher.strategy_source() is not None
    store.down = True
    v2 = publisher.publish(delta_artifact(4), {}, 2_000)
    before = _rejections("store_unavailable")
    assert not watcher.receive(v2)
    assert _rejections("store_unavailable") == before + 1
    assert watcher.retry.update == v2 and watcher.current == v1  # v1 keeps serving
    assert watcher.strategy_source() is None
    clock.now += 0.4  # the first wait is at least half of retry_first_s
    assert not watcher.retry_due() and store.fetches == 2
    for attempt in range(1, 6):  # each wait doubles, but never past retry_max_s
        clock.now += 4.0
        assert not watcher.retry_due()
        assert store.fetches == 2 + attempt
    assert _rejections("store_unavailable") == before + 6
    store.down = False
    clock.now += 4.0
    assert watcher.retry_due()
    assert watcher.current == v2 and watcher.retry.update is None
    strategy = watcher.strategy_source()
    assert strategy is not None and strategy.model_version == v2.version
    clock.now += 60.0
    assert not watcher.retry_due() and store.fetches == 8  # nothing left to retry


def test_a_newer_record_replaces_the_retry_and_a_bad_version_is_never_retried(
    publisher: MemPublisher,
) -> None:
    watcher, store, clock = _flaky_watcher(publisher)
    assert watcher.receive(publisher.publish(delta_artifact(3), {}, 1_000))
    store.down = True
    v2 = publisher.publish(delta_artifact(4), {}, 2_000)
    assert not watcher.receive(v2) and watcher.retry.update == v2
    store.down = False
    v3 = publisher.publish(delta_artifact(5), {}, 3_000)  # e.g. a rollback: the newest wins
    assert watcher.receive(v3) and watcher.retry.update is None
    clock.now += 60.0
    assert not watcher.retry_due() and watcher.current == v3
    broken = publisher.publish(delta_artifact(3, n=2), {}, 4_000)
    assert not watcher.receive(broken) and watcher.retry.update is None
    # fetched at last after an outage, but bad in itself: rejected for good
    store.down = True
    corrupt = publisher.publish(delta_artifact(6), {}, 5_000)
    assert not watcher.receive(corrupt) and watcher.retry.update == corrupt
    publisher.store.path(corrupt.sha256).write_bytes(delta_artifact(7).weights)
    store.down = False
    clock.now += 4.0
    assert not watcher.retry_due()
    assert watcher.retry.update is None and "hash mismatch" in watcher.rejected[-1][1]


def test_an_unreadable_store_directory_is_an_unavailable_store(
    publisher: MemPublisher, tmp_path: Path
) -> None:
    clock = Clock()
    watcher = ModelWatcher(KafkaSettings(), "updates", "m", publisher.store, load_delta,
                           retry_first_s=1.0, retry_max_s=4.0, clock=clock)
    update = publisher.publish(delta_artifact(3), {}, 1_000)
    unmounted = tmp_path.with_name(tmp_path.name + "-unmounted")
    tmp_path.rename(unmounted)  # the shared volume is gone
    try:
        before = _rejections("store_unavailable"), _rejections("invalid")
        assert not watcher.receive(update)
        assert (_rejections("store_unavailable"), _rejections("invalid")) == (
            before[0] + 1,
            before[1],
        )
        assert watcher.retry.update == update
    finally:
        unmounted.rename(tmp_path)
    clock.now += 4.0
    assert watcher.retry_due() and watcher.current == update


def test_serve_shows_the_watchers_metrics_on_its_own_page() -> None:
    from stream_warmer.serve.metrics import ServeMetrics
    from stream_warmer.trainer.metrics import MODEL_UPDATES, WATCHER_METRICS

    metrics = ServeMetrics()
    metrics.include(WATCHER_METRICS)
    MODEL_UPDATES.labels("rejected", "unsigned").inc()
    text = metrics.render().decode()
    assert 'stream_warmer_model_updates_total{reason="unsigned",result="rejected"}' in text
    assert "stream_warmer_model_serving_info" in text and "stream_warmer_events_total" in text


@pytest.mark.parametrize(("setting", "reported", "expected"), [(-1, 6, 6), (3, 6, 3)])
def test_a_round_trains_for_the_delay_its_gate_judges_at(
        publisher: MemPublisher, setting: int, reported: int, expected: int) -> None:
    """One delay per round: serve's report (gate_delay -1) or the fixed setting, given
    to the training and to the gate alike."""
    seen: list[int] = []

    def train(events: Any, live: Any, delay: int) -> Any:
        seen.append(delay)
        return train_delta(events, live, delay)

    settings = TrainerSettings(min_events=100, gate_cache_fracs=(0.1,), gate_delay=setting)
    rnd = TrainingRound(settings, StrategySettings(), publisher, train, load_delta,
                        serve_delay=lambda: reported)
    result = rnd(_frame(2000))
    assert seen == [expected]
    assert result.gate is not None and result.gate.metrics()["gate_delay"] == float(expected)
