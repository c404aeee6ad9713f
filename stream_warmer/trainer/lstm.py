"""Binds the trainer and the watcher to the LSTM package (``model``, ``strategies.lstm``).

``lstm_trainer(settings)`` is a ``TrainFn``: it trains with ``model.train.train_model``
(warm start from the live artifact when there is one) and packs the result;
``lstm_loader(settings)`` is a ``LoadFn``: it unpacks an artifact with every check
and builds an ``LstmStrategy`` stamped with the version.

The artifact is the one format of ``model.checkpoint`` (``to_artifact`` /
``from_artifact``): safetensors weights plus a manifest with the architecture, the
feature spec, the threshold, metrics, each tensor's shape and dtype, the weights'
sha256 and ``vocab_version`` (a hash of the feature spec, so streaming state carries
over only between versions that share it). Loading checks all of them, then loads
strictly; anything wrong is a ``ModelError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stream_warmer.errors import ModelError
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings
from stream_warmer.strategies.base import WarmingStrategy
from stream_warmer.trainer.rounds import Candidate, LoadFn, TrainFn
from stream_warmer.trainer.store import Artifact

if TYPE_CHECKING:
    from stream_warmer.model.train import Trained


def pack(trained: Trained) -> Artifact:
    """The checkpoint artifact (``model.checkpoint.to_artifact``) of a trained model."""
    from stream_warmer.model.checkpoint import to_artifact

    weights, manifest = to_artifact(trained.model, trained.spec, trained.threshold,
                                    trained.metrics)
    return Artifact(weights, manifest)


def unpack(artifact: Artifact) -> Trained:
    """Rebuild and validate a model (``model.checkpoint.from_artifact``; ``ModelError``)."""
    from stream_warmer.model.checkpoint import from_artifact
    from stream_warmer.model.train import Trained

    loaded = from_artifact(artifact.weights, artifact.manifest)
    metrics = {k: float(v) for k, v in loaded.manifest.get("metrics", {}).items()
               if isinstance(v, int | float)}
    return Trained(loaded.model, loaded.spec, loaded.threshold, metrics)


def lstm_trainer(settings: Settings) -> TrainFn:
    """A ``TrainFn`` over ``train_model`` with the trainer and model settings."""
    from stream_warmer.model.train import train_model
    from stream_warmer.strategies.lstm import LstmStrategy

    def train(events: Sequence[AccessEvent], live: Artifact | None, delay: int = 0) -> Candidate:
        previous = None
        if live is not None:
            try:
                previous = unpack(live)
            except ModelError:
                previous = None  # a bad live artifact never blocks training: from scratch
        trained = train_model(list(events), settings, previous, delay=delay)
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
