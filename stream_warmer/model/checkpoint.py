"""Checkpoints: safetensors weights + a JSON manifest; load validates before use.

The manifest carries the constructor arguments (``arch``), the feature spec (the output
classes and the fitted buckets, as plain lists), the class names, the trained
threshold, validation metrics, each tensor's shape and dtype, the weights' sha256 and
``vocab_version`` (a hash of the feature spec: streaming state carries over between
versions only when it is equal). This is the one artifact format: the trainer, the
watcher's loader, ``strategies.lstm`` and the ``model`` CLI all use these functions.
Loading rebuilds ``WarmNet`` from ``arch``, checks hash, shapes, dtypes and finiteness,
then ``load_state_dict(strict=True)``; anything wrong raises ``ModelError``.
``read_weights`` is the one safetensors check (parse, every float finite), also the
watcher's before it hands any artifact to its loader.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stream_warmer.errors import ModelError
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import ModelConfig, WarmNet

FORMAT = "stream-warmer-lstm/1"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Loaded:
    """A validated model with its features, threshold and manifest."""

    model: WarmNet
    spec: FeatureSpec
    threshold: float
    manifest: dict[str, Any]


def class_names(spec: FeatureSpec) -> list[str]:
    """Human-readable output classes, in head order."""
    ranks = [f"successor_rank_{r + 1}" for r in range(spec.ranks)]
    deltas = [f"delta_{d:+d}" for d in spec.deltas]
    return ["no_warm", *ranks, f"size_stride_unit_{spec.size_unit}", "last_stride", *deltas]


def vocab_version(features: dict[str, Any]) -> str:
    """A short hash of a feature spec's JSON (input buckets and output classes)."""
    return hashlib.sha256(json.dumps(features, sort_keys=True).encode()).hexdigest()[:16]


def to_artifact(model: WarmNet, spec: FeatureSpec, threshold: float,
                metrics: dict[str, float] | None = None) -> tuple[bytes, dict[str, Any]]:
    """(safetensors bytes, manifest dict) of a model."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(state)
    features = spec.to_json()
    manifest = {
        "format": FORMAT,
        "arch": model.config.to_dict(),
        "features": features,
        "vocab": class_names(spec),
        "vocab_version": vocab_version(features),
        "threshold": float(threshold),
        "metrics": {k: float(v) for k, v in (metrics or {}).items() if math.isfinite(v)},
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in state.items()},
        "sha256": hashlib.sha256(weights).hexdigest(),
    }
    return weights, manifest


def from_artifact(weights: bytes, manifest: dict[str, Any]) -> Loaded:
    """Rebuild and validate a model from its artifact; raises ``ModelError``."""
    if manifest.get("format") != FORMAT:
        msg = f"manifest format is {manifest.get('format')!r}, expected {FORMAT!r}"
        raise ModelError(msg)
    digest = hashlib.sha256(weights).hexdigest()
    if digest != manifest.get("sha256"):
        msg = f"weights sha256 {digest} does not match manifest {manifest.get('sha256')!r}"
        raise ModelError(msg)
    try:
        config = ModelConfig(**manifest["arch"])
        spec = FeatureSpec.from_json(manifest["features"])
        threshold = float(manifest["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"manifest arch/features/threshold are invalid: {exc}"
        raise ModelError(msg) from exc
    _check_compatible(config, spec)
    state = read_weights(weights)
    _check_tensors(state, manifest.get("tensors", {}))
    model = WarmNet(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = f"weights do not fit the architecture: {exc}"
        raise ModelError(msg) from exc
    return Loaded(model.eval(), spec, threshold, manifest)


def _check_compatible(config: ModelConfig, spec: FeatureSpec) -> None:
    want = (spec.cat_vocab, len(spec.cat_sizes), 2 * spec.n_classes, spec.n_classes)
    got = (config.cat_vocab, config.n_cats, config.n_bits, config.n_classes)
    if want != got:
        msg = f"arch {got} does not match the feature spec {want} (vocab, cats, bits, classes)"
        raise ModelError(msg)


def read_weights(weights: bytes) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes; every floating tensor must be finite (``ModelError``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(weights)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        msg = f"weights are not valid safetensors: {exc}"
        raise ModelError(msg) from exc
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            msg = f"tensor {name!r} has non-finite values"
            raise ModelError(msg)
    return tensors


def _check_tensors(state: dict[str, torch.Tensor], declared: dict[str, Any]) -> None:
    for name, tensor in state.items():
        spec = declared.get(name)
        shape, dtype = list(tensor.shape), str(tensor.dtype)
        if spec is None or shape != spec.get("shape") or dtype != spec.get("dtype"):
            msg = f"tensor {name!r} {shape} {dtype} differs from manifest {spec}"
            raise ModelError(msg)
    missing = set(declared) - set(state)
    if missing:
        msg = f"weights lack tensors named in the manifest: {sorted(missing)}"
        raise ModelError(msg)


def save_checkpoint(directory: Path, model: WarmNet, spec: FeatureSpec, threshold: float,
                    metrics: dict[str, float] | None = None) -> Path:
    """Write ``model.safetensors`` and ``manifest.json`` into ``directory``."""
    weights, manifest = to_artifact(model, spec, threshold, metrics)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / WEIGHTS_FILE).write_bytes(weights)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return directory


def load_checkpoint(directory: Path) -> Loaded:
    """Read and validate a checkpoint directory; raises ``ModelError``."""
    try:
        weights = (directory / WEIGHTS_FILE).read_bytes()
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read checkpoint in {str(directory)!r}: {exc}"
        raise ModelError(msg) from exc
    if not isinstance(manifest, dict):
        msg = "manifest is not a JSON object"
        raise ModelError(msg)
    return from_artifact(weights, manifest)
