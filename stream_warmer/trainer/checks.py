"""The checks the model watcher makes itself before it loads an update's artifact, and
the metric label of a version that fails them (or any other step of applying it)."""

from __future__ import annotations

from stream_warmer.errors import ModelError, SinkUnavailableError
from stream_warmer.trainer.artifact import Artifact, declared_vocab_version
from stream_warmer.trainer.signing import SignatureError
from stream_warmer.trainer.updates import ModelUpdate


def check_weights(weights: bytes) -> dict[str, tuple[int, ...]]:
    """Parse safetensors bytes; every floating tensor must be finite. Returns shapes.

    The check is ``model.checkpoint.read_weights``, the one the LSTM loader makes too.
    """
    from stream_warmer.model.checkpoint import read_weights

    return {name: tuple(t.shape) for name, t in read_weights(weights).items()}


def check_artifact(artifact: Artifact, update: ModelUpdate) -> None:
    """The checks the watcher makes itself before handing the artifact to the loader.

    The update's own fields that steer the swap must be the manifest's (the manifest
    is what the hashes, and a signature, cover).
    """
    manifest = artifact.manifest
    arch = manifest.get("arch")
    if arch is not None and arch != update.arch:
        msg = f"architecture of {update.version} in the update differs from its manifest"
        raise ModelError(msg)
    if manifest.get("sha256", update.sha256) != update.sha256:
        msg = f"manifest of {update.version} names other weights than the update"
        raise ModelError(msg)
    if declared_vocab_version(manifest) != update.vocab_version:
        msg = f"vocab_version of {update.version} in the update differs from its manifest"
        raise ModelError(msg)
    check_weights(artifact.weights)


def rejection_reason(exc: Exception) -> str:
    """The metric label of a rejected version: a signature's reason, or what failed."""
    if isinstance(exc, SignatureError):
        return exc.reason
    return "store_unavailable" if isinstance(exc, SinkUnavailableError) else "invalid"
