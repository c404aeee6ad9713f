"""Checkpoints: round trip, and clear errors for bad manifests and weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from stream_warmer.errors import ModelError
from stream_warmer.model.checkpoint import (
    from_artifact,
    load_checkpoint,
    save_checkpoint,
    to_artifact,
)
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.model.train import build_config
from stream_warmer.settings import ModelSettings


def _model() -> tuple[WarmNet, FeatureSpec]:
    spec = FeatureSpec(deltas=(1, 8), gap_edges=(0.5, 1.0))
    torch.manual_seed(1)
    ms = ModelSettings(embed_dim=4, hidden=8, layers=1)
    return WarmNet(build_config(spec, ms)).eval(), spec


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model, spec = _model()
    save_checkpoint(tmp_path, model, spec, 0.25, {"val_hit": 0.5})
    loaded = load_checkpoint(tmp_path)
    cats = torch.zeros(2, 3, len(spec.cat_sizes), dtype=torch.long)
    bits = torch.ones(2, 3, 2 * spec.n_classes)
    assert torch.equal(model.forward_seq(cats, bits)[0], loaded.model.forward_seq(cats, bits)[0])
    assert loaded.spec == spec
    assert loaded.threshold == 0.25
    assert loaded.manifest["vocab"][0] == "no_warm"


def test_hash_mismatch_is_rejected() -> None:
    weights, manifest = to_artifact(*_model(), 0.1)
    with pytest.raises(ModelError, match="sha256"):
        from_artifact(weights + b" ", manifest)


def test_bad_arch_is_rejected() -> None:
    weights, manifest = to_artifact(*_model(), 0.1)
    manifest["arch"] = {**manifest["arch"], "hidden": -3}
    with pytest.raises(ModelError, match="invalid"):
        from_artifact(weights, manifest)


def test_arch_not_matching_features_is_rejected() -> None:
    weights, manifest = to_artifact(*_model(), 0.1)
    manifest["features"] = {**manifest["features"], "deltas": [1]}
    with pytest.raises(ModelError, match="feature spec"):
        from_artifact(weights, manifest)


def test_non_finite_weights_are_rejected() -> None:
    model, spec = _model()
    _, manifest = to_artifact(model, spec, 0.1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.bias"][0] = float("nan")
    bad = save(state)
    manifest["sha256"] = __import__("hashlib").sha256(bad).hexdigest()
    with pytest.raises(ModelError, match="non-finite"):
        from_artifact(bad, manifest)


def test_wrong_shapes_are_rejected() -> None:
    model, spec = _model()
    weights, manifest = to_artifact(model, spec, 0.1)
    manifest["tensors"]["head.bias"]["shape"] = [99]
    with pytest.raises(ModelError, match=r"head\.bias"):
        from_artifact(weights, manifest)


def test_garbage_weights_and_missing_files_are_rejected(tmp_path: Path) -> None:
    _, manifest = to_artifact(*_model(), 0.1)
    junk = b"not safetensors"
    manifest["sha256"] = __import__("hashlib").sha256(junk).hexdigest()
    with pytest.raises(ModelError, match="safetensors"):
        from_artifact(junk, manifest)
    with pytest.raises(ModelError, match="cannot read"):
        load_checkpoint(tmp_path / "absent")


def test_trainer_pack_is_the_checkpoint_format_and_unpack_checks_it() -> None:
    from stream_warmer.model.train import Trained
    from stream_warmer.trainer.lstm import pack, unpack
    from stream_warmer.trainer.store import Artifact

    model, spec = _model()
    artifact = pack(Trained(model, spec, 0.3, {"val_hit": 0.5, "bad": float("nan")}))
    assert artifact.manifest == to_artifact(model, spec, 0.3, {"val_hit": 0.5})[1]
    back = unpack(artifact)
    assert back.spec == spec and back.threshold == 0.3 and back.metrics == {"val_hit": 0.5}
    tampered = bytearray(artifact.weights)
    tampered[-1] ^= 1
    with pytest.raises(ModelError, match="sha256"):
        unpack(Artifact(bytes(tampered), artifact.manifest))


def test_vocab_version_follows_the_feature_spec() -> None:
    model, spec = _model()
    _, manifest = to_artifact(model, spec, 0.3)
    _, same = to_artifact(WarmNet(model.config), spec, 0.9)
    assert manifest["vocab_version"] == same["vocab_version"]
    other = FeatureSpec(deltas=(1, 8), gap_edges=(0.5, 2.0))
    _, differs = to_artifact(WarmNet(build_config(other, ModelSettings(embed_dim=4, hidden=8))),
                             other, 0.3)
    assert differs["vocab_version"] != manifest["vocab_version"]
