"""Warming strategies behind one interface (``base.WarmingStrategy``).

``build_baseline`` makes the cheap baselines by name; the LSTM strategy lives in
``strategies.lstm`` and is built by its own code (it needs a trained model).
"""

from __future__ import annotations

from stream_warmer.settings import StrategySettings
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.baselines import Markov, NextKey, NoWarm, Popularity, build

BASELINES: tuple[str, ...] = ("none", "popularity", "markov", "nextkey")

__all__ = [
    "BASELINES",
    "Markov",
    "NextKey",
    "NoWarm",
    "Popularity",
    "Prediction",
    "WarmingStrategy",
    "Window",
    "build_baseline",
]


def build_baseline(name: str, settings: StrategySettings) -> WarmingStrategy:
    """The baseline called ``name`` (one of ``BASELINES``), its memory bounded by ``settings``.

    ``markov1`` (not in ``BASELINES``) is REFERENCE.md's unbounded Markov table, for
    offline evaluation only.

    Raises ``ValueError`` for any other name.
    """
    return build(name, settings)
