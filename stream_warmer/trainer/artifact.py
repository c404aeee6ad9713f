"""What a model artifact is and how its hashes are checked, whatever store holds it.

An artifact is the safetensors weights plus the JSON manifest (architecture,
vocabulary, feature spec, metrics, the weights' sha256) and, when the trainer has a
signing key, the manifest's signature (``trainer.signing``). The manifest's bytes are
its canonical JSON (``manifest_bytes``): what is hashed, stored and signed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from stream_warmer.errors import ModelError
from stream_warmer.trainer.updates import ModelUpdate

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Artifact:
    """Weights (safetensors bytes), the manifest (a JSON-able dict), its signature."""

    weights: bytes
    manifest: dict[str, Any]
    signature: str | None = None


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


def declared_vocab_version(manifest: dict[str, Any]) -> str:
    """The manifest's ``vocab_version``, or a hash of its vocabulary when it has none.

    This is what a ``ModelUpdate`` carries as ``vocab_version``; computing it for a
    new checkpoint is ``model.checkpoint.vocab_version`` (a hash of the feature spec).
    """
    given = manifest.get("vocab_version")
    if isinstance(given, str) and given:
        return given
    vocab = manifest.get("vocab")
    return sha256_hex(repr(vocab).encode())[:16] if vocab is not None else "none"


def check_hex(sha: str) -> str:
    """``sha`` if it is a lower-case sha256 hex digest; ``ModelError`` otherwise."""
    if len(sha) != 64 or not set(sha) <= _HEX:
        msg = f"not a sha256 hex digest: {sha[:80]!r}"
        raise ModelError(msg)
    return sha


def verify(
    weights: bytes, manifest_raw: bytes, update: ModelUpdate, signature: str | None = None
) -> Artifact:
    """The artifact, if both hashes match the update; ``ModelError`` otherwise.

    The signature is passed through unchecked (``ManifestSigner.check`` does that).
    """
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
    return Artifact(weights, manifest, signature)
