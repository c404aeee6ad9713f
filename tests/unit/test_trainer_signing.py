"""Manifest signatures: sign, check, and what each store does with a key (no services)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from stream_warmer.errors import ConfigError, ModelError
from stream_warmer.settings import Settings, load_settings
from stream_warmer.trainer.artifact import Artifact, manifest_bytes, sha256_hex
from stream_warmer.trainer.signing import ManifestSigner, SignatureError
from stream_warmer.trainer.store import DirStore, RedisStore
from stream_warmer.trainer.updates import ModelUpdate
from tests.unit.test_store import FakeRedis
from tests.unit.trainer_fakes import delta_artifact

KEY = b"k" * 32
OTHER = b"o" * 32


def signable(delta: float = 3) -> Artifact:
    """A delta artifact whose manifest names its weights, as published ones do."""
    art = delta_artifact(delta)
    return Artifact(art.weights, {**art.manifest, "sha256": sha256_hex(art.weights)})


Opener = Callable[[bytes | None], Any]


@pytest.fixture(params=["dir", "redis"])
def open_(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a store with a key (or none) over the same contents, as replicas do."""
    fake = FakeRedis()

    def opener(key: bytes | None) -> Any:
        signer = ManifestSigner(key) if key is not None else None
        if request.param == "dir":
            return DirStore(tmp_path, signer)
        return RedisStore(fake, "pfx", signer)

    return opener


def put(store: Any, artifact: Artifact) -> ModelUpdate:
    stored = store.put(artifact)
    return ModelUpdate(
        name="m",
        version="v1",
        sha256=stored.sha256,
        artifact=stored.locator,
        manifest_sha256=stored.manifest_sha256,
        arch=artifact.manifest["arch"],
        vocab_version="v1",
        metrics={},
        created_at=1,
    )


def test_a_signed_artifact_verifies(open_: Opener) -> None:
    update = put(open_(KEY), signable())
    got = open_(KEY).fetch(update)
    assert got.signature is not None and got.signature.startswith("hmac-sha256:")
    assert ManifestSigner(KEY).status(got) == "valid"


def test_unsigned_is_rejected_with_a_key_and_accepted_without(open_: Opener) -> None:
    update = put(open_(None), signable())
    with pytest.raises(SignatureError, match="unsigned") as info:
        open_(KEY).fetch(update)
    assert info.value.reason == "unsigned"
    assert open_(None).fetch(update).signature is None


def test_another_key_is_a_bad_signature(open_: Opener) -> None:
    update = put(open_(OTHER), signable())
    with pytest.raises(SignatureError, match="bad signature") as info:
        open_(KEY).fetch(update)
    assert info.value.reason == "bad_signature"
    assert open_(None).fetch(update).signature is not None  # no key: ignored


def test_a_tampered_manifest_keeps_no_valid_signature() -> None:
    # whoever rewrites the manifest can announce its new hash, not a signature for it
    signer = ManifestSigner(KEY)
    art = signable()
    signature = signer.sign(art.weights, art.manifest)
    forged = {**art.manifest, "arch": {"kind": "delta", "n": 9}}
    with pytest.raises(SignatureError) as info:
        signer.check(Artifact(art.weights, forged, signature), "v1")
    assert info.value.reason == "bad_signature"
    signer.check(Artifact(art.weights, art.manifest, signature), "v1")


def test_other_weights_under_a_signed_manifest_are_a_bad_signature() -> None:
    signer = ManifestSigner(KEY)
    art = signable(3)
    signature = signer.sign(art.weights, art.manifest)
    other = delta_artifact(4).weights
    with pytest.raises(SignatureError, match="does not name these weights"):
        signer.check(Artifact(other, art.manifest, signature), "v1")


def test_tampered_weights_are_still_caught_by_the_hash(open_: Opener) -> None:
    store = open_(KEY)
    update = put(store, signable(3))
    if isinstance(store, DirStore):
        store.path(update.sha256).write_bytes(delta_artifact(4).weights)
    else:
        store._redis.data[store.key(update.sha256)] = delta_artifact(4).weights
    with pytest.raises(ModelError, match="weights hash mismatch") as info:
        store.fetch(update)
    assert not isinstance(info.value, SignatureError)


def test_only_a_manifest_naming_its_weights_is_signed() -> None:
    art = delta_artifact(3)
    with pytest.raises(ModelError, match="must name its weights"):
        ManifestSigner(KEY).sign(art.weights, art.manifest)


def test_the_signature_is_an_hmac_of_the_canonical_manifest() -> None:
    import hashlib
    import hmac

    art = signable()
    want = hmac.new(KEY, manifest_bytes(art.manifest), hashlib.sha256).hexdigest()
    assert ManifestSigner(KEY).sign(art.weights, art.manifest) == f"hmac-sha256:{want}"


def test_a_short_key_is_refused_without_showing_it() -> None:
    assert ManifestSigner.from_secret(None) is None
    with pytest.raises(ConfigError, match="SIGNING_KEY") as info:
        ManifestSigner.from_secret(SecretStr("tiny-secret"))
    assert "tiny-secret" not in str(info.value)
    assert ManifestSigner.from_secret(SecretStr("x" * 16)) is not None


def _settings(root: Path, key: str | None) -> Settings:
    env = {"STREAM_WARMER_MODEL__STORE": "dir", "STREAM_WARMER_MODEL__STORE_DIR": str(root)}
    if key is not None:
        env["STREAM_WARMER_MODEL__SIGNING_KEY"] = key
    return load_settings(None, env)


def test_model_show_reports_the_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_warmer.cli import model as cli

    store = DirStore(tmp_path, ManifestSigner(b"a" * 16))
    update = put(store, signable())
    store.register(update)

    class Publisher:
        name = "m"

        def find(self, version: str) -> ModelUpdate:
            assert version == update.version
            return update

    def show(key: str | None) -> dict[str, Any]:
        assert cli._show(Publisher(), update.version, _settings(tmp_path, key)) == 0  # type: ignore[arg-type]
        return dict(json.loads(capsys.readouterr().out)["signature"])

    assert show("a" * 16)["status"] == "valid"
    assert show("b" * 16)["status"] == "bad_signature"
    assert show(None)["status"].startswith("not checked")
    assert show(None)["value"].startswith("hmac-sha256:")
