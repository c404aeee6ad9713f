"""Warming strategies behind one interface (``base.WarmingStrategy``).

``build_baseline`` makes the cheap baselines by name, the published peers ``pg``
(``strategies.peers``) and ``mithril`` (``strategies.mithril``) included; the LSTM
strategy lives in ``strategies.lstm`` and is built by its own code (it needs a
trained model).
"""

from __future__ import annotations

from stream_warmer.settings import StrategySettings
from stream_warmer.strategies.base import Prediction, WarmingStrategy, Window
from stream_warmer.strategies.baselines import Markov, NextKey, NoWarm, Popularity, build
from stream_warmer.strategies.mithril import Mithril
from stream_warmer.strategies.peers import ProbabilityGraph

BASELINES: tuple[str, ...] = ("none", "popularity", "markov", "nextkey", "pg", "mithril")

__all__ = [
    "BASELINES",
    "Markov",
    "Mithril",
    "NextKey",
    "NoWarm",
    "Popularity",
    "Prediction",
    "ProbabilityGraph",
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
    if name == "pg":
        return ProbabilityGraph(settings.pg_lookahead, settings.pg_threshold,
                                settings.pg_max_keys_per_tenant, settings.pg_max_successors)
    if name == "mithril":
        return Mithril(settings.mithril_lookahead, min_support=settings.mithril_min_support,
                       max_support=settings.mithril_max_support,
                       confidence=settings.mithril_confidence,
                       mining_threshold=settings.mithril_mining_threshold,
                       max_keys=settings.mithril_max_keys_per_tenant,
                       max_associations=settings.mithril_max_associations)
    return build(name, settings)
