"""Model store: content addressing, hash checks, registry, key space (no services)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_warmer import warmqueue
from stream_warmer.errors import ModelError
from stream_warmer.events import valid_tenant
from stream_warmer.trainer.store import (
    Artifact,
    DirStore,
    RedisStore,
    manifest_bytes,
    sha256_hex,
)
from stream_warmer.trainer.updates import ModelUpdate, encode_update
from tests.unit.trainer_fakes import delta_artifact


class FakeRedis:
    """The few Redis commands the store uses, on a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def mset(self, mapping: dict[str, bytes]) -> None:
        self.data.update(mapping)

    def mget(self, keys: list[str]) -> list[Any]:
        return [self.data.get(k) for k in keys]

    def hset(self, name: str, field: str, value: bytes) -> None:
        self.data.setdefault(name, {})[field] = value

    def hgetall(self, name: str) -> dict[str, bytes]:
        return dict(self.data.get(name, {}))


def update_for(
    store: Any, artifact: Artifact, version: str = "v1", created: int = 1
) -> ModelUpdate:
    stored = store.put(artifact)
    return ModelUpdate(
        name="m",
        version=version,
        sha256=stored.sha256,
        artifact=stored.locator,
        manifest_sha256=stored.manifest_sha256,
        arch=artifact.manifest["arch"],
        vocab_version="v1",
        metrics={},
        created_at=created,
    )


@pytest.fixture(params=["dir", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "dir":
        return DirStore(tmp_path / "models")
    return RedisStore(FakeRedis(), "pfx")


def test_roundtrip_is_content_addressed(store: Any) -> None:
    art = delta_artifact(3)
    update = update_for(store, art)
    assert update.sha256 == sha256_hex(art.weights)
    got = store.fetch(update)
    assert got.weights == art.weights
    assert got.manifest == art.manifest


def test_redis_key_layout() -> None:
    fake = FakeRedis()
    store = RedisStore(fake, "pfx")
    update = update_for(store, delta_artifact(3))
    store.register(update)
    key = f"pfx::model:sha256:{update.sha256}"
    assert update.artifact == f"redis:{key}"
    assert fake.data[key] == delta_artifact(3).weights
    assert fake.data[f"pfx::model:manifest:sha256:{update.manifest_sha256}"] == manifest_bytes(
        delta_artifact(3).manifest
    )
    assert set(fake.data) == {
        key,
        f"pfx::model:manifest:sha256:{update.manifest_sha256}",
        "pfx::model:versions:m",
    }


def _stored_keys(prefix: str) -> list[str]:
    """Every key a Redis store writes for one published, registered version."""
    from stream_warmer.trainer.signing import ManifestSigner

    fake = FakeRedis()
    store = RedisStore(fake, prefix, ManifestSigner(b"k" * 16))
    art = delta_artifact(3)
    signable = Artifact(art.weights, {**art.manifest, "sha256": sha256_hex(art.weights)})
    store.register(update_for(store, signable))
    assert len(fake.data) == 4  # weights, manifest, signature, registry
    return list(fake.data)


def _tenant_keys(prefix: str, tenant: str) -> set[str]:
    return {
        warmqueue.queue_key(prefix, tenant),
        warmqueue.expiry_key(prefix, tenant),
        warmqueue.marker_key(prefix, tenant, "sha256"),
        warmqueue.tenants_key(prefix),
        warmqueue.wake_key(prefix),
    }


@pytest.mark.parametrize("tenant", ["model", "MODEL", "models", "model.v1", "-", ".", "sw"])
def test_a_tenant_named_model_cannot_reach_the_store(tenant: str) -> None:
    # the store used to live under {prefix}:model:..., inside tenant "model"'s keys
    assert valid_tenant(tenant)
    for key in _stored_keys("sw"):
        assert not key.startswith(f"sw:{tenant}:"), key
        assert key not in _tenant_keys("sw", tenant)


@given(
    prefix=st.from_regex(r"[A-Za-z0-9._-]{1,32}", fullmatch=True),
    tenant=st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
)
def test_no_valid_tenant_shares_a_key_prefix_with_the_store(prefix: str, tenant: str) -> None:
    keys = _stored_keys(prefix)
    for key in keys:
        # a tenant's keys are {prefix}:{tenant}:...; the store's segment after the
        # prefix is empty, which no valid tenant is
        assert key.startswith(f"{prefix}::model:")
        assert not valid_tenant(key.split(":")[1])
        assert not key.startswith(f"{prefix}:{tenant}:")
        assert key not in _tenant_keys(prefix, tenant)


def _legacy_put(fake: FakeRedis, prefix: str, art: Artifact, update: ModelUpdate) -> None:
    """Move an artifact to the layout before the store left the tenant key space."""
    raw = manifest_bytes(art.manifest)
    fake.data = {
        f"{prefix}:model:sha256:{update.sha256}": art.weights,
        f"{prefix}:model:manifest:sha256:{update.manifest_sha256}": raw,
    }


def test_old_key_layout_is_still_read_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeRedis()
    store = RedisStore(fake, "pfx")
    art = delta_artifact(3)
    update = update_for(store, art)
    _legacy_put(fake, "pfx", art, update)
    fake.hset("pfx:model:versions:m", "v1", encode_update(update))
    with caplog.at_level(logging.WARNING, logger="stream_warmer.trainer.store"):
        assert store.fetch(update).manifest == art.manifest
        assert store.versions("m") == [update]
    assert "old key layout" in caplog.text
    fake.data[f"pfx:model:sha256:{update.sha256}"] = delta_artifact(4).weights
    with pytest.raises(ModelError, match="weights hash mismatch"):
        store.fetch(update)  # the old layout is hash-checked like the new one
    store.put(art)  # a new write goes to the new layout only
    assert store.fetch(update).weights == art.weights
    assert f"pfx::model:sha256:{update.sha256}" in fake.data


def test_old_layout_registry_is_merged_and_the_new_entry_wins() -> None:
    fake = FakeRedis()
    store = RedisStore(fake, "pfx")
    old = update_for(store, delta_artifact(3), "v1", created=10)
    newer = update_for(store, delta_artifact(4), "v2", created=20)
    fake.hset("pfx:model:versions:m", "v1", encode_update(old))
    fake.hset("pfx:model:versions:m", "v2", b"stale")
    store.register(newer)
    assert store.versions("m") == [old, newer]


def test_tampered_weights_rejected(store: Any) -> None:
    update = update_for(store, delta_artifact(3))
    if isinstance(store, DirStore):
        store.path(update.sha256).write_bytes(delta_artifact(4).weights)
    else:
        store._redis.data[store.key(update.sha256)] = delta_artifact(4).weights
    with pytest.raises(ModelError, match="weights hash mismatch"):
        store.fetch(update)


def test_tampered_manifest_rejected(store: Any) -> None:
    update = update_for(store, delta_artifact(3))
    bad = manifest_bytes({"arch": {"kind": "delta", "n": 2}})
    if isinstance(store, DirStore):
        store.manifest_path(update.manifest_sha256).write_bytes(bad)
    else:
        store._redis.data[store.manifest_key(update.manifest_sha256)] = bad
    with pytest.raises(ModelError, match="manifest hash mismatch"):
        store.fetch(update)


def test_versions_sharing_weights_keep_their_own_manifests(store: Any) -> None:
    # a re-publication (or a round that ends on the live weights) has the same weights
    # but a manifest of its own: the older version must stay loadable (rollback)
    art = delta_artifact(3)
    older = update_for(store, Artifact(art.weights, {**art.manifest, "gate": {"n": 1}}), "v1")
    newer = update_for(store, Artifact(art.weights, {**art.manifest, "gate": {"n": 2}}), "v2")
    assert older.sha256 == newer.sha256
    assert older.manifest_sha256 != newer.manifest_sha256
    assert store.fetch(older).manifest["gate"] == {"n": 1}
    assert store.fetch(newer).manifest["gate"] == {"n": 2}


def test_legacy_manifest_location_still_read(store: Any) -> None:
    art = delta_artifact(3)
    update = update_for(store, art)
    raw = manifest_bytes(art.manifest)
    if isinstance(store, DirStore):
        store.manifest_path(update.manifest_sha256).unlink()
        store.path(update.sha256).with_suffix(".manifest.json").write_bytes(raw)
    else:
        store._redis.data = {
            f"pfx:model:sha256:{update.sha256}": art.weights,
            f"pfx:model:sha256:{update.sha256}:manifest": raw,
        }
    assert store.fetch(update).manifest == art.manifest


def test_missing_artifact_rejected(store: Any) -> None:
    update = update_for(store, delta_artifact(3))
    other = ModelUpdate(**{**_fields(update), "sha256": "0" * 64})
    with pytest.raises(ModelError):
        store.fetch(other)


def test_not_a_digest_rejected(store: Any) -> None:
    update = update_for(store, delta_artifact(3))
    with pytest.raises(ModelError, match="not a sha256"):
        store.fetch(ModelUpdate(**{**_fields(update), "sha256": "../../etc/passwd"}))


def test_registry_lists_versions_oldest_first(store: Any) -> None:
    u2 = update_for(store, delta_artifact(4), "v2", created=20)
    u1 = update_for(store, delta_artifact(3), "v1", created=10)
    store.register(u2)
    store.register(u1)
    assert [u.version for u in store.versions("m")] == ["v1", "v2"]
    assert store.versions("other") == []


def test_manifest_must_be_finite_json() -> None:
    with pytest.raises(ModelError):
        manifest_bytes({"x": float("nan")})


def _fields(update: ModelUpdate) -> dict[str, Any]:
    return {f: getattr(update, f) for f in update.__struct_fields__}
