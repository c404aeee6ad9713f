"""Binds the trainer and the watcher to the LSTM package (``model``, ``strategies.lstm``).

``lstm_trainer(settings)`` is a ``TrainFn``: it trains with ``model.train.train_model``
(warm start from the live artifact when there is one) and packs the result;
``lstm_loader(settings)`` is a ``LoadFn``: it unpacks an artifact with every check
and builds an ``LstmStrategy`` stamped with the version.

The artifact is the model's ``state_dict`` as safetensors plus a manifest:
``{"format", "arch" (ModelConfig), "spec" (FeatureSpec), "threshold", "metrics",
"vocab_version"}``; ``vocab_version`` is a hash of the feature spec (the output
classes and input buckets), so streaming state carries over only between versions
that share it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stream_warmer.errors import ModelError
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings
from stream_warmer.strategies.base import WarmingStrategy
from stream_warmer.trainer.rounds import Candidate, LoadFn, TrainFn
from stream_warmer.trainer.store import Artifact, sha256_hex

if TYPE_CHECKING:
    from stream_warmer.model.train import Trained

FORMAT = 1


def pack(trained: Trained) -> Artifact:
    """Weights (safetensors, CPU, contiguous) and the manifest of a trained model."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
    spec = trained.spec.to_json()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "arch": trained.model.config.to_dict(),
        "spec": spec,
        "threshold": float(trained.threshold),
        "metrics": {k: float(v) for k, v in trained.metrics.items() if math.isfinite(v)},
        "vocab_version": sha256_hex(json.dumps(spec, sort_keys=True).encode())[:16],
    }
    return Artifact(save(state), manifest)


def unpack(artifact: Artifact) -> Trained:
    """Rebuild the model from its manifest and load the weights strictly.

    Raises ``ModelError`` on an unknown format, bad constructor arguments, missing or
    extra tensors, a shape that differs from the architecture, or non-finite values.
    """
    from stream_warmer.model.features import FeatureSpec
    from stream_warmer.model.net import ModelConfig, WarmNet
    from stream_warmer.model.train import Trained
    from stream_warmer.trainer.watcher import check_weights

    man = artifact.manifest
    if man.get("format") != FORMAT:
        msg = f"unknown artifact format {man.get('format')!r}"
        raise ModelError(msg)
    try:
        model = WarmNet(ModelConfig(**man["arch"]))
        spec = FeatureSpec.from_json(man["spec"])
        threshold = float(man["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"manifest does not describe a model: {exc}"
        raise ModelError(msg) from exc
    shapes = check_weights(artifact.weights)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if shapes != expected:
        diff = sorted(set(shapes.items()) ^ set(expected.items()))[:4]
        msg = f"weights do not fit the architecture: {diff}"
        raise ModelError(msg)
    if not 0.0 <= threshold <= 1.0:
        msg = f"threshold {threshold} is outside [0, 1]"
        raise ModelError(msg)
    from safetensors.torch import load

    model.load_state_dict(load(artifact.weights), strict=True)
    metrics = {k: float(v) for k, v in man.get("metrics", {}).items() if isinstance(v, int | float)}
    return Trained(model.eval(), spec, threshold, metrics)


def lstm_trainer(settings: Settings) -> TrainFn:
    """A ``TrainFn`` over ``train_model`` with the trainer and model settings."""
    from stream_warmer.model.train import train_model
    from stream_warmer.strategies.lstm import LstmStrategy

    def train(events: Sequence[AccessEvent], live: Artifact | None) -> Candidate:
        previous = unpack(live) if live is not None else None
        trained = train_model(list(events), settings.trainer, settings.model, previous)
        strategy = LstmStrategy(
            trained.model, trained.spec, trained.threshold, settings.model, version="candidate"
        )
        return Candidate(strategy, pack(trained))

    return train


def lstm_loader(settings: Settings) -> LoadFn:
    """A ``LoadFn`` building an ``LstmStrategy`` (device chosen once, by the strategy)."""
    from stream_warmer.strategies.lstm import LstmStrategy

    def load(artifact: Artifact, version: str) -> WarmingStrategy:
        trained = unpack(artifact)
        return LstmStrategy(
            trained.model, trained.spec, trained.threshold, settings.model, version=version
        )

    return load
