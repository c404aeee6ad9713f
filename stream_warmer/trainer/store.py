"""The model store: content-addressed artifacts every replica can read.

An artifact is the safetensors weights plus the JSON manifest (architecture,
vocabulary, feature spec, metrics). Each part is stored under its own sha256: two
versions may share weights but not their manifest (the gate's numbers are in it), so
keying the manifest by the weights' hash would let the newer one overwrite the older
one's and make that version unloadable (no rollback to it).

- ``RedisStore`` (default): ``{prefix}:model:sha256:<hex>`` holds the weights and
  ``{prefix}:model:manifest:sha256:<hex>`` a manifest; the registry of published
  versions is the hash ``{prefix}:model:versions:<name>`` (version -> update JSON).
- ``DirStore`` (shared volumes): ``<dir>/sha256-<hex>.safetensors`` and
  ``<dir>/manifest-sha256-<hex>.json``, written to a temporary name and renamed, so a
  reader never sees half a file; the registry is ``<dir>/versions/<name>/<version>.json``.

Artifacts written before that layout (manifest beside its weights,
``...:<hex>:manifest`` / ``sha256-<hex>.manifest.json``) are still read.

``fetch`` checks both hashes before returning anything, so a tampered or truncated
artifact raises ``ModelError`` instead of reaching the loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stream_warmer.errors import ModelError, SinkUnavailableError
from stream_warmer.settings import ModelSettings, RedisSettings
from stream_warmer.trainer.updates import ModelUpdate, decode_update, encode_update

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Artifact:
    """Weights (safetensors bytes) and the manifest (a JSON-able dict) of one model."""

    weights: bytes
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """Where ``put`` wrote an artifact and the hashes a reader must check."""

    sha256: str
    manifest_sha256: str
    locator: str


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Canonical JSON of a manifest (sorted keys; non-finite numbers are refused)."""
    try:
        return json.dumps(manifest, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        msg = f"manifest is not plain finite JSON: {exc}"
        raise ModelError(msg) from exc


def _check_hex(sha: str) -> str:
    if len(sha) != 64 or not set(sha) <= _HEX:
        msg = f"not a sha256 hex digest: {sha[:80]!r}"
        raise ModelError(msg)
    return sha


def verify(weights: bytes, manifest_raw: bytes, update: ModelUpdate) -> Artifact:
    """The artifact, if both hashes match the update; ``ModelError`` otherwise."""
    got = sha256_hex(weights)
    if got != update.sha256:
        msg = f"weights hash mismatch for {update.version}: expected {update.sha256}, got {got}"
        raise ModelError(msg)
    got_manifest = sha256_hex(manifest_raw)
    if got_manifest != update.manifest_sha256:
        msg = f"manifest hash mismatch for {update.version}: got {got_manifest}"
        raise ModelError(msg)
    try:
        manifest = json.loads(manifest_raw)
    except ValueError as exc:
        msg = f"manifest of {update.version} is not JSON"
        raise ModelError(msg) from exc
    if not isinstance(manifest, dict):
        msg = f"manifest of {update.version} is not a JSON object"
        raise ModelError(msg)
    return Artifact(weights, manifest)


class ModelStore(Protocol):
    """What the trainer, the watcher and ``model`` need from a store."""

    def put(self, artifact: Artifact) -> StoredArtifact:
        """Store the artifact (idempotent: same content, same place)."""

    def fetch(self, update: ModelUpdate) -> Artifact:
        """The artifact the update names, hash-checked (``ModelError`` if not)."""

    def register(self, update: ModelUpdate) -> None:
        """Remember a published version (for ``model list`` and rollback)."""

    def versions(self, name: str) -> list[ModelUpdate]:
        """Every registered version of ``name``, oldest first."""


class RedisStore:
    """Artifacts in Redis under content-addressed keys (the default store)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def key(self, sha: str) -> str:
        """The Redis key of the weights with this sha256."""
        return f"{self._prefix}:model:sha256:{_check_hex(sha)}"

    def manifest_key(self, sha: str) -> str:
        """The Redis key of the manifest with this sha256."""
        return f"{self._prefix}:model:manifest:sha256:{_check_hex(sha)}"

    def put(self, artifact: Artifact) -> StoredArtifact:
        """SET weights and manifest (content-addressed, so rewriting is harmless)."""
        sha = sha256_hex(artifact.weights)
        raw = manifest_bytes(artifact.manifest)
        key, manifest_sha = self.key(sha), sha256_hex(raw)
        parts = {key: artifact.weights, self.manifest_key(manifest_sha): raw}
        self._call(lambda: self._redis.mset(parts))
        return StoredArtifact(sha, manifest_sha, f"redis:{key}")

    def fetch(self, update: ModelUpdate) -> Artifact:
        """GET both parts and verify them against the update."""
        key = self.key(update.sha256)
        keys = [key, self.manifest_key(update.manifest_sha256), f"{key}:manifest"]  # + legacy
        weights, raw, legacy = self._call(lambda: self._redis.mget(keys))
        raw = raw if raw is not None else legacy
        if weights is None or raw is None:
            msg = f"artifact of {update.version} is missing from Redis ({key})"
            raise ModelError(msg)
        return verify(weights, raw, update)

    def register(self, update: ModelUpdate) -> None:
        """HSET version -> update JSON in the per-name registry."""
        reg = f"{self._prefix}:model:versions:{update.name}"
        self._call(lambda: self._redis.hset(reg, update.version, encode_update(update)))

    def versions(self, name: str) -> list[ModelUpdate]:
        """Every registered version, oldest first (by ``created_at``)."""
        raw = self._call(lambda: self._redis.hgetall(f"{self._prefix}:model:versions:{name}"))
        updates = [
            u for u in (decode_update(v) for v in raw.values()) if isinstance(u, ModelUpdate)
        ]
        return sorted(updates, key=lambda u: (u.created_at, u.version))

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

    def __init__(self, root: Path) -> None:
        self._root = root

    def path(self, sha: str) -> Path:
        """The weights file of this sha256."""
        return self._root / f"sha256-{_check_hex(sha)}.safetensors"

    def manifest_path(self, sha: str) -> Path:
        """The manifest file of this sha256."""
        return self._root / f"manifest-sha256-{_check_hex(sha)}.json"

    def put(self, artifact: Artifact) -> StoredArtifact:
        """Write manifest then weights, each atomically (temp file + rename)."""
        sha = sha256_hex(artifact.weights)
        raw = manifest_bytes(artifact.manifest)
        path, manifest_sha = self.path(sha), sha256_hex(raw)
        _atomic_write(self.manifest_path(manifest_sha), raw)
        _atomic_write(path, artifact.weights)
        return StoredArtifact(sha, manifest_sha, f"file:{path}")

    def fetch(self, update: ModelUpdate) -> Artifact:
        """Read both files and verify them against the update."""
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
        return verify(weights, raw, update)

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


def open_store(model: ModelSettings, redis_settings: RedisSettings) -> ModelStore:
    """The store ``model.store`` names: Redis (default) or the ``store_dir`` folder."""
    if model.store == "dir":
        return DirStore(model.store_dir)
    import redis

    password = redis_settings.password.get_secret_value() if redis_settings.password else None
    client = redis.Redis.from_url(
        redis_settings.url, password=password, socket_timeout=redis_settings.socket_timeout_s
    )
    return RedisStore(client, redis_settings.key_prefix)
