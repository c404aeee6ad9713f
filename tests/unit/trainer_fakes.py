"""A tiny stand-in model for the trainer tests: "warm key + delta".

Its artifact has the real shape of one (safetensors weights + manifest with ``arch``),
so the store, gate, publication and watcher run unchanged; only the maths is trivial.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from safetensors.torch import load, save

from stream_warmer.errors import ModelError
from stream_warmer.events import AccessEvent
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.trainer.rounds import Candidate
from stream_warmer.trainer.store import Artifact


class DeltaStrategy(WarmingStrategy):
    """Warm ``key + delta`` for integer keys."""

    name = "delta"

    def __init__(self, delta: int, version: str = "candidate") -> None:
        self.delta = delta
        self._version = version

    @property
    def model_version(self) -> str:
        return self._version

    def observe(self, event: AccessEvent) -> None:
        pass

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        return [[Prediction(str(int(w.events[-1].key) + self.delta), 0.9)] for w in windows]


def delta_artifact(delta: float, n: int = 1, vocab: str = "v1") -> Artifact:
    weights = save({"delta": torch.full((n,), float(delta))})
    manifest = {"arch": {"kind": "delta", "n": 1}, "vocab_version": vocab, "metrics": {"x": 1.0}}
    return Artifact(weights, manifest)


def load_delta(artifact: Artifact, version: str) -> DeltaStrategy:
    arch = artifact.manifest["arch"]
    tensors = load(artifact.weights)
    if arch.get("kind") != "delta" or tuple(tensors["delta"].shape) != (arch["n"],):
        raise ModelError("shape mismatch")
    return DeltaStrategy(int(tensors["delta"][0]), version)


def train_delta(events: Sequence[AccessEvent], live: Artifact | None, delay: int = 0) -> Candidate:
    """Fit the most common per-tenant key delta."""
    last: dict[str, int] = {}
    deltas: Counter[int] = Counter()
    for e in events:
        key = int(e.key)
        if e.tenant in last:
            deltas[key - last[e.tenant]] += 1
        last[e.tenant] = key
    delta = deltas.most_common(1)[0][0] if deltas else 1
    return Candidate(DeltaStrategy(delta), delta_artifact(delta))


def stride_events(n: int, delta: int = 3, tenants: int = 4, start_ts: int = 0) -> list[AccessEvent]:
    """Each tenant walks its own keys with a fixed stride (never repeating a key)."""
    out = []
    for i in range(n):
        t = i % tenants
        step = i // tenants
        out.append(AccessEvent(f"t{t}", str(1_000_000 * (t + 1) + delta * step), start_ts + i))
    return out
