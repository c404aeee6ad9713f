"""Artifact authenticity: an HMAC-SHA256 of the manifest with a key the trainer shares.

Integrity is the sha256s: the weights and the manifest must hash to what the update
names. Those say nothing about who wrote them, so with ``model.signing_key`` set the
trainer's store also writes ``hmac-sha256:<hex>``, the HMAC-SHA256 under that key of
the manifest's canonical bytes (``artifact.manifest_bytes``). The manifest names the
weights' sha256, so the signature covers both. A store opened with the key checks it
on every fetch (replicas before a swap, the trainer before a warm start, ``model
rollback`` before it announces): no signature is ``unsigned``, a wrong one or a
manifest naming other weights is ``bad_signature``, both a ``SignatureError``.
Without a key nothing is signed or checked, and a signature present is ignored.

What a signature does not cover: which version string or model name announces the
artifact, so re-announcing an older signed version (a rollback) stays possible for
anyone who can write to ``model-updates``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

from pydantic import SecretStr

from stream_warmer.errors import ConfigError, ModelError
from stream_warmer.trainer.artifact import Artifact, manifest_bytes, sha256_hex

SCHEME = "hmac-sha256"
MIN_KEY_CHARS = 16
RejectReason = Literal["unsigned", "bad_signature"]


class SignatureError(ModelError):
    """An artifact's signature is missing (``unsigned``) or wrong (``bad_signature``)."""

    def __init__(self, message: str, reason: RejectReason) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason


class ManifestSigner:
    """Signs manifests and checks artifacts' signatures with one shared key."""

    def __init__(self, key: bytes) -> None:
        assert key, "an empty signing key signs nothing"  # settings refuse one
        self._key = key

    @classmethod
    def from_secret(cls, secret: SecretStr | None) -> ManifestSigner | None:
        """The signer of a configured key (``model.signing_key``), or ``None``.

        A key shorter than ``MIN_KEY_CHARS`` is a ``ConfigError`` (that never shows it).
        """
        if secret is None:
            return None
        key = secret.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            msg = (
                f"STREAM_WARMER_MODEL__SIGNING_KEY (model.signing_key) must be at least "
                f"{MIN_KEY_CHARS} characters; got {len(key)}"
            )
            raise ConfigError(msg)
        return cls(key.encode())

    def sign(self, weights: bytes, manifest: dict[str, Any]) -> str:
        """The signature of a manifest that names these weights' sha256."""
        if manifest.get("sha256") != sha256_hex(weights):
            msg = "a signed manifest must name its weights' sha256 (manifest['sha256'])"
            raise ModelError(msg)
        return self._mac(manifest_bytes(manifest))

    def check(self, artifact: Artifact, version: str) -> None:
        """Raise ``SignatureError`` unless the artifact is signed with this key."""
        if not artifact.signature:
            msg = f"model version {version} is unsigned and a signing key is configured"
            raise SignatureError(msg, "unsigned")
        expected = self._mac(manifest_bytes(artifact.manifest)).encode()
        if not hmac.compare_digest(artifact.signature.encode(), expected):
            msg = f"model version {version} has a bad signature (another key, or tampered)"
            raise SignatureError(msg, "bad_signature")
        if artifact.manifest.get("sha256") != sha256_hex(artifact.weights):
            msg = f"the signed manifest of {version} does not name these weights"
            raise SignatureError(msg, "bad_signature")

    def status(self, artifact: Artifact) -> str:
        """``valid``, ``unsigned`` or ``bad_signature`` (for ``model show``)."""
        try:
            self.check(artifact, "-")
        except SignatureError as exc:
            return exc.reason
        return "valid"

    def _mac(self, data: bytes) -> str:
        return f"{SCHEME}:{hmac.new(self._key, data, hashlib.sha256).hexdigest()}"
