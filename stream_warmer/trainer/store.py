"""The model store: content-addressed artifacts every replica can read.

An artifact (``trainer.artifact``) is the safetensors weights plus the JSON manifest
and, with ``model.signing_key`` set, the manifest's signature. Each part is stored
under its own sha256: two versions may share weights but not their manifest (the
gate's numbers are in it), so keying the manifest by the weights' hash would let the
newer one overwrite the older one's and make that version unloadable (no rollback).

- ``RedisStore`` (default): ``{prefix}::model:sha256:<hex>`` holds the weights,
  ``{prefix}::model:manifest:sha256:<hex>`` a manifest and
  ``{prefix}::model:signature:sha256:<hex>`` its signature; the registry of published
  versions is the hash ``{prefix}::model:versions:<name>`` (version -> update JSON).
  The empty segment after the prefix keeps the store outside every tenant's keys
  (``{prefix}:{tenant}:...``, a tenant being 1-64 of ``[A-Za-z0-9._-]``), a tenant
  named ``model`` included.
- ``DirStore`` (shared volumes): ``<dir>/sha256-<hex>.safetensors``,
  ``<dir>/manifest-sha256-<hex>.json`` and ``<dir>/manifest-sha256-<hex>.sig``, written
  to a temporary name and renamed, so a reader never sees half a file; the registry
  is ``<dir>/versions/<name>/<version>.json``.

Migration from the old layout inside the tenant key space (``{prefix}:model:...``):
``RedisStore`` writes only the new keys but still reads the old ones, with a warning,
when an artifact or registry entry is not under the new ones. Every read is checked
(hashes, and a signature with a key) wherever it came from, so the fallback is safe,
and replicas upgraded one by one keep serving the live version and can roll back to
older ones. Artifacts written before that (manifest beside its weights,
``...:<hex>:manifest`` / ``sha256-<hex>.manifest.json``) are still read.

``fetch`` checks both hashes (and, with a signer, the signature) before returning
anything, so a tampered, truncated or unsigned artifact raises ``ModelError``
instead of reaching the loader.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from stream_warmer.errors import ModelError, SinkUnavailableError
from stream_warmer.settings import ModelSettings, RedisSettings
from stream_warmer.trainer.artifact import (
    Artifact,
    StoredArtifact,
    check_hex,
    manifest_bytes,
    sha256_hex,
    verify,
)
from stream_warmer.trainer.signing import ManifestSigner
from stream_warmer.trainer.updates import ModelUpdate, decode_update, encode_update

__all__ = [
    "Artifact",
    "DirStore",
    "ModelStore",
    "RedisStore",
    "StoredArtifact",
    "manifest_bytes",
    "open_store",
    "sha256_hex",
    "verify",
]

log = logging.getLogger(__name__)


class ModelStore(Protocol):
    """What the trainer, the watcher and ``model`` need from a store."""

    def put(self, artifact: Artifact) -> StoredArtifact:
        """Store the artifact (idempotent: same content, same place); sign it with a key."""

    def fetch(self, update: ModelUpdate) -> Artifact:
        """The artifact the update names, hash- and signature-checked (``ModelError``)."""

    def register(self, update: ModelUpdate) -> None:
        """Remember a published version (for ``model list`` and rollback)."""

    def versions(self, name: str) -> list[ModelUpdate]:
        """Every registered version of ``name``, oldest first."""


def _signed(signer: ManifestSigner | None, artifact: Artifact) -> str | None:
    return signer.sign(artifact.weights, artifact.manifest) if signer is not None else None


def _checked(signer: ManifestSigner | None, artifact: Artifact, update: ModelUpdate) -> Artifact:
    if signer is not None:
        signer.check(artifact, update.version)
    return artifact


class RedisStore:
    """Artifacts in Redis under content-addressed keys (the default store)."""

    def __init__(self, client: Any, prefix: str, signer: ManifestSigner | None = None) -> None:
        self._redis = client
        self._prefix = prefix
        self._signer = signer

    @property
    def namespace(self) -> str:
        """The start of every key this store writes: ``{prefix}::model:``."""
        return f"{self._prefix}::model:"

    def key(self, sha: str) -> str:
        """The Redis key of the weights with this sha256."""
        return f"{self.namespace}sha256:{check_hex(sha)}"

    def manifest_key(self, sha: str) -> str:
        """The Redis key of the manifest with this sha256."""
        return f"{self.namespace}manifest:sha256:{check_hex(sha)}"

    def signature_key(self, sha: str) -> str:
        """The Redis key of the signature of the manifest with this sha256."""
        return f"{self.namespace}signature:sha256:{check_hex(sha)}"

    def registry_key(self, name: str) -> str:
        """The Redis hash of the registered versions of ``name``."""
        return f"{self.namespace}versions:{name}"

    def put(self, artifact: Artifact) -> StoredArtifact:
        """SET weights, manifest and signature in one MSET (rewriting is harmless)."""
        sha = sha256_hex(artifact.weights)
        raw = manifest_bytes(artifact.manifest)
        key, manifest_sha = self.key(sha), sha256_hex(raw)
        parts = {key: artifact.weights, self.manifest_key(manifest_sha): raw}
        signature = _signed(self._signer, artifact)
        if signature is not None:
            parts[self.signature_key(manifest_sha)] = signature.encode()
        self._call(lambda: self._redis.mset(parts))
        return StoredArtifact(sha, manifest_sha, f"redis:{key}")

    def fetch(self, update: ModelUpdate) -> Artifact:
        """GET the parts (the old layout if need be) and verify them against the update."""
        key = self.key(update.sha256)
        manifest_sha = update.manifest_sha256
        keys = [key, self.manifest_key(manifest_sha), self.signature_key(manifest_sha)]
        weights, raw, signature = self._call(lambda: self._redis.mget(keys))
        if weights is None or raw is None:
            weights, raw = self._legacy_parts(update)
            signature = None  # nothing was signed in the old layout
        if weights is None or raw is None:
            msg = f"artifact of {update.version} is missing from Redis ({key})"
            raise ModelError(msg)
        sig = signature.decode(errors="replace") if signature is not None else None
        return _checked(self._signer, verify(weights, raw, update, sig), update)

    def register(self, update: ModelUpdate) -> None:
        """HSET version -> update JSON in the per-name registry."""
        reg = self.registry_key(update.name)
        self._call(lambda: self._redis.hset(reg, update.version, encode_update(update)))

    def versions(self, name: str) -> list[ModelUpdate]:
        """Every registered version, oldest first (by ``created_at``), old layout too."""
        raw = self._call(lambda: self._redis.hgetall(self.registry_key(name)))
        legacy = self._call(lambda: self._redis.hgetall(self._legacy(f"versions:{name}")))
        if set(legacy) - set(raw):
            log.warning(
                "model registry entries read from the old key layout",
                extra={"key": self._legacy(f"versions:{name}"), "entries": len(legacy)},
            )
        decoded = (decode_update(v) for v in {**legacy, **raw}.values())
        updates = [u for u in decoded if isinstance(u, ModelUpdate)]
        return sorted(updates, key=lambda u: (u.created_at, u.version))

    def _legacy(self, rest: str) -> str:
        return f"{self._prefix}:model:{rest}"  # inside tenant "model"'s keys: read only

    def _legacy_parts(self, update: ModelUpdate) -> tuple[bytes | None, bytes | None]:
        old = self._legacy(f"sha256:{check_hex(update.sha256)}")
        keys = [old, self._legacy(f"manifest:sha256:{check_hex(update.manifest_sha256)}")]
        weights, raw, beside = self._call(lambda: self._redis.mget([*keys, f"{old}:manifest"]))
        raw = raw if raw is not None else beside
        if weights is not None and raw is not None:
            log.warning(
                "model artifact read from the old key layout; publish a new version",
                extra={"version": update.version, "key": old},
            )
        return weights, raw

    @staticmethod
    def _call(fn: Any) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            msg = f"model store (Redis) unavailable: {exc}"
            raise SinkUnavailableError(msg) from exc


class DirStore:
    """Artifacts as files in a directory (for a volume shared by every replica)."""

    def __init__(self, root: Path, signer: ManifestSigner | None = None) -> None:
        self._root = root
        self._signer = signer

    def path(self, sha: str) -> Path:
        """The weights file of this sha256."""
        return self._root / f"sha256-{check_hex(sha)}.safetensors"

    def manifest_path(self, sha: str) -> Path:
        """The manifest file of this sha256."""
        return self._root / f"manifest-sha256-{check_hex(sha)}.json"

    def signature_path(self, sha: str) -> Path:
        """The signature file of the manifest with this sha256."""
        return self.manifest_path(sha).with_suffix(".sig")

    def put(self, artifact: Artifact) -> StoredArtifact:
        """Write signature, manifest, then weights, each atomically (temp file + rename)."""
        sha = sha256_hex(artifact.weights)
        raw = manifest_bytes(artifact.manifest)
        path, manifest_sha = self.path(sha), sha256_hex(raw)
        signature = _signed(self._signer, artifact)
        if signature is not None:
            _atomic_write(self.signature_path(manifest_sha), signature.encode())
        _atomic_write(self.manifest_path(manifest_sha), raw)
        _atomic_write(path, artifact.weights)
        return StoredArtifact(sha, manifest_sha, f"file:{path}")

    def fetch(self, update: ModelUpdate) -> Artifact:
        """Read the files and verify them against the update."""
        path = self.path(update.sha256)
        manifest = self.manifest_path(update.manifest_sha256)
        if not manifest.exists():
            manifest = path.with_suffix(".manifest.json")  # the layout before manifest_path
        try:
            weights = path.read_bytes()
            raw = manifest.read_bytes()
        except OSError as exc:
            msg = f"artifact of {update.version} cannot be read from {path}: {exc}"
            raise ModelError(msg) from exc
        signature = self._signature(update.manifest_sha256)
        return _checked(self._signer, verify(weights, raw, update, signature), update)

    def register(self, update: ModelUpdate) -> None:
        """Write ``versions/<name>/<version>.json``."""
        folder = self._root / "versions" / update.name
        _atomic_write(folder / f"{update.version}.json", encode_update(update))

    def versions(self, name: str) -> list[ModelUpdate]:
        """Every registered version, oldest first (by ``created_at``)."""
        folder = self._root / "versions" / name
        if not folder.is_dir():
            return []
        decoded = (decode_update(p.read_bytes()) for p in folder.glob("*.json"))
        updates = [u for u in decoded if isinstance(u, ModelUpdate)]
        return sorted(updates, key=lambda u: (u.created_at, u.version))

    def _signature(self, manifest_sha: str) -> str | None:
        try:
            return self.signature_path(manifest_sha).read_text(errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"signature of manifest {manifest_sha} cannot be read: {exc}"
            raise ModelError(msg) from exc


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        msg = f"cannot write {path}: {exc}"
        raise ModelError(msg) from exc


def open_store(
    model: ModelSettings, redis_settings: RedisSettings, *, signed: bool = True
) -> ModelStore:
    """The store ``model.store`` names: Redis (default) or the ``store_dir`` folder.

    With ``model.signing_key`` set (and ``signed``), it signs what it stores and
    rejects what is not signed with that key. ``signed=False`` neither signs nor checks
    signatures (``model show`` reports them itself); the hashes are always checked.
    """
    signer = ManifestSigner.from_secret(model.signing_key) if signed else None
    if model.store == "dir":
        return DirStore(model.store_dir, signer)
    import redis

    password = redis_settings.password.get_secret_value() if redis_settings.password else None
    client = redis.Redis.from_url(
        redis_settings.url, password=password, socket_timeout=redis_settings.socket_timeout_s
    )
    return RedisStore(client, redis_settings.key_prefix, signer)
