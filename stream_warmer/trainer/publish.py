"""Safe publication: store the artifact first, then announce it on ``model-updates``.

Order (a reader must never see an update whose artifact is not there yet):

1. write weights and manifest into the store (content-addressed, idempotent; a store
   with a signing key also writes the manifest's signature, ``trainer.signing``);
2. register the version in the store's registry (for ``model list`` and rollback);
3. produce the ``ModelUpdate`` keyed by model name and wait for the broker's ack.

The published manifest names the weights' sha256 (``sha256``), so a signature of the
manifest covers the weights too.

Rollback re-produces a registered version's update as the newest record, so every
replica (and every replica started later) serves it; the store is not touched. It
fetches the artifact first, so with a signing key an unsigned or wrongly signed
version is refused here rather than by every replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_warmer.errors import ModelError
from stream_warmer.settings import KafkaSettings
from stream_warmer.trainer.artifact import Artifact, declared_vocab_version, sha256_hex
from stream_warmer.trainer.store import ModelStore
from stream_warmer.trainer.updates import ModelUpdate, new_version, publish_update, read_updates


def published_manifest(artifact: Artifact, metrics: dict[str, Any]) -> dict[str, Any]:
    """The manifest as published: the gate's ``metrics`` and the weights' ``sha256`` added."""
    sha = sha256_hex(artifact.weights)
    named = artifact.manifest.get("sha256", sha)
    if named != sha:
        msg = f"manifest names weights {named!r} but the weights hash to {sha}"
        raise ModelError(msg)
    return {**artifact.manifest, "gate": metrics, "sha256": sha}


class ModelPublisher:
    """Publishes, lists and rolls back the versions of one model name."""

    def __init__(
        self,
        store: ModelStore,
        kafka: KafkaSettings,
        topic: str,
        name: str,
        publish: Callable[[KafkaSettings, str, ModelUpdate], None] = publish_update,
    ) -> None:
        self.store = store
        self._kafka = kafka
        self._topic = topic
        self.name = name
        self._publish = publish

    def publish(
        self, artifact: Artifact, metrics: dict[str, Any], created_at_ms: int
    ) -> ModelUpdate:
        """Store, register and announce a new version; return its update."""
        manifest = published_manifest(artifact, metrics)
        stored = self.store.put(Artifact(artifact.weights, manifest))
        arch = manifest.get("arch")
        own_metrics = manifest.get("metrics")
        update = ModelUpdate(
            name=self.name,
            version=new_version(created_at_ms, stored.sha256),
            sha256=stored.sha256,
            artifact=stored.locator,
            manifest_sha256=stored.manifest_sha256,
            arch=arch if isinstance(arch, dict) else {},
            vocab_version=declared_vocab_version(manifest),
            metrics={**(own_metrics if isinstance(own_metrics, dict) else {}), **metrics},
            created_at=created_at_ms,
        )
        self.store.register(update)
        self._publish(self._kafka, self._topic, update)
        return update

    def history(self, timeout_s: float = 10.0) -> list[ModelUpdate]:
        """The updates of this name still on the topic, oldest first."""
        return read_updates(self._kafka, self._topic, self.name, timeout_s)

    def live(self, timeout_s: float = 10.0) -> ModelUpdate | None:
        """The newest update on the topic: the version replicas serve."""
        updates = self.history(timeout_s)
        return updates[-1] if updates else None

    def find(self, version: str) -> ModelUpdate:
        """The registered update of ``version`` (``ModelError`` if unknown)."""
        for update in self.store.versions(self.name):
            if update.version == version:
                return update
        msg = f"model {self.name!r} has no registered version {version!r}"
        raise ModelError(msg)

    def rollback(self, version: str) -> ModelUpdate:
        """Check the stored artifact, then re-announce ``version`` as the newest record."""
        update = self.find(version)
        self.store.fetch(update)  # refuse to announce an artifact that is gone or bad
        self._publish(self._kafka, self._topic, update)
        return update
