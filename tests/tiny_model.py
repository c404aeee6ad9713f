"""A small untrained LSTM strategy for the tests that need one serving.

It runs ``CandidateTracker.step`` (which parses integer keys) on every event, and
after an integer key n every candidate class names n+1, so each event with an
integer key warms its successor whatever the (random) weights say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_warmer.strategies.lstm import LstmStrategy


def tiny_lstm(version: str = "tiny") -> LstmStrategy:
    """The model, seeded, on the CPU with one thread and 16 state slots."""
    import torch

    from stream_warmer.model.features import FeatureSpec
    from stream_warmer.model.net import WarmNet
    from stream_warmer.model.train import build_config
    from stream_warmer.settings import ModelSettings
    from stream_warmer.strategies.lstm import LstmStrategy

    torch.manual_seed(0)
    ms = ModelSettings(embed_dim=4, hidden=8, cpu_threads=1, device="cpu", max_state_slots=16,
                       budget_online=False)
    spec = FeatureSpec(deltas=(1,))
    return LstmStrategy(WarmNet(build_config(spec, ms)), spec, 0.0, ms, version=version)
