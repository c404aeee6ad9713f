"""What the warm-eval protocol (``evaluation.warmeval``) takes and gives: the rows, the
trace statistics, the strategies to run, the iso-warm gate, and C from f.

Kept apart from the replay so that the trainer's gate, the benches and the plots can
use the rows without the protocol's internals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from stream_warmer.events import AccessEvent
from stream_warmer.lru import Item, LruSim
from stream_warmer.model.budget import ascend
from stream_warmer.strategies.base import WarmingStrategy
from stream_warmer.strategies.presence import Presence


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One result row (the JSON of ``evaluate --json`` is a list of these)."""

    trace: str
    strategy: str
    cache_frac: float
    k: int
    capacity: int
    requests: int
    hit_ratio: float
    warm_precision: float
    warms_per_request: float
    delay: int = 0  # requests between a warm's issue and its application (DESIGN §8)
    # iso-warm rows (``warm_rates``): the effective warms per request the row's cache
    # was held at by ``WarmRateGate``; None: the strategy's own rate
    warm_rate: float | None = None
    # frontier rows (``thresholds``): the fixed score floor the row's cache took warms
    # at (``FixedThreshold``); None: not such a row
    threshold: float | None = None
    # seconds per strategy and trace (module docstring); not compared: rows that only
    # differ in timing are equal
    train_s: float = field(default=math.nan, compare=False)
    replay_s: float = field(default=math.nan, compare=False)

    def held(self) -> str:
        """How the row's cache was held: ``-`` (the strategy's own rate), ``W=`` (the
        iso-warm gate's rate), ``T=`` (a fixed threshold)."""
        if self.threshold is not None:
            return f"T={self.threshold:g}"
        return "-" if self.warm_rate is None else f"W={self.warm_rate:g}"

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (``nan`` stays a float; JSON writers map it)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TraceStats:
    """What the first pass learns: request count and distinct (tenant, key) pairs."""

    requests: int
    distinct: int


@dataclass(slots=True)
class ReplayTimes:
    """Shared seconds of one ``evaluate``: the counting pass and the trace reads of the
    replay (what no strategy is charged for); filled in when passed to ``evaluate``."""

    scan_s: float = 0.0
    read_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A strategy to evaluate: its row name and a factory of fresh instances.

    A strategy whose class sets ``nested_k = True`` (its top k is a prefix of its top
    k+1, true of every baseline) runs once at the largest k and serves every k;
    any other gets one instance per k, all fed in the same pass.
    """

    name: str
    make: Callable[[], WarmingStrategy]
    ks: tuple[int, ...] | None = None  # only these k (e.g. ``none``: one k is enough)
    # an instance made for a delay (the lstm: trained for warms that land that late);
    # then each delay gets its own instances, else one instance feeds every delay
    for_delay: Callable[[int], WarmingStrategy] | None = None


@dataclass(slots=True)
class WarmRateGate:
    """Holds one cache at ``target`` effective warms per request (iso-warm comparison).

    A named warm whose score is below ``threshold`` is dropped; after each request the
    threshold moves by ``lr`` x (the request's effective warms - ``target``), within
    [0, 1 + lr] (every score is in [0, 1]; above 1 nothing passes). The same gate holds
    every strategy, on the scores it names its warms with. A strategy with a confidence
    floor of its own that it can give up (``WarmingStrategy.release_floor``: the lstm's
    trained threshold) names its top k whatever their score, and the gate, starting at
    that floor, may move below it: held above its own rate, it spends more. Any other
    strategy names what it names (markov1 and nextkey their top k; pg and mithril
    what passes their own bounds, which also steer their presence shadows), so the gate
    can only lower its rate, and one that names fewer warms stays below the target (its
    row says how many it spent). Scores that tie (nextkey's 1.0) make the threshold
    alternate around them, which holds the long-run rate all the same.
    """

    target: float
    lr: float = 2e-3
    threshold: float = 0.0

    def step(self, sim: LruSim, item: tuple[str, str],
             named: list[tuple[tuple[str, str], float]], counting: bool) -> None:
        """One request of ``sim``, with the named warms that pass the threshold."""
        effective = sim.step(item, passing(named, self.threshold), counting)
        self.threshold = ascend(self.threshold, self.lr, effective - self.target,
                                top=1.0 + self.lr)


@dataclass(slots=True)
class FixedThreshold:
    """Holds one cache to the named warms scoring at least ``threshold``, all replay long.

    A point of the strategy's frontier (``evaluate --threshold``): over a grid of
    thresholds, each cache spends what its strategy's confidence says, not a rate
    imposed on every stretch of the trace (which ``WarmRateGate`` does, and which
    costs hits: it cuts warms in the predictable stretches, where they pay). The
    floor is taken over as the gate takes it over (``WarmingStrategy.release_floor``),
    so a strategy with one, the lstm, can be read below it too.
    """

    threshold: float

    def step(self, sim: LruSim, item: tuple[str, str],
             named: list[tuple[tuple[str, str], float]], counting: bool) -> None:
        """One request of ``sim``, with the named warms that reach the threshold."""
        sim.step(item, passing(named, self.threshold), counting)


@dataclass(slots=True)
class PresenceThreshold:
    """A frontier cache of a strategy that picks its warms with a presence shadow
    (``WarmingStrategy.picking``): of the candidates named (best first, whatever their
    score), those scoring at least ``threshold``, the first ``k`` its own shadow of
    the cache (``Presence``, told each request first) does not hold, as the strategy
    at that threshold would pick them."""

    threshold: float
    k: int
    presence: Presence

    def step(self, sim: LruSim, item: tuple[str, str],
             named: list[tuple[tuple[str, str], float]], counting: bool) -> None:
        """One request of ``sim``, with the warms picked from the named candidates."""
        tenant, key = item
        self.presence.request(tenant, key)
        picks = self.presence.pick(tenant, ((w[1], score) for w, score in named
                                            if score >= self.threshold), self.k)
        sim.step(item, [(tenant, p.key) for p in picks], counting)


def passing(named: list[tuple[tuple[str, str], float]], threshold: float
            ) -> list[Item]:
    """The named warms (best first) whose score reaches ``threshold``: what a gate or a
    fixed threshold lets through to its cache."""
    return [w for w, score in named if score >= threshold]


def capacity_for(frac: float, distinct: int) -> int:
    """C = floor(f x distinct), at least 1 (REFERENCE.md's C column rounds down)."""
    return max(1, math.floor(frac * distinct + 1e-9))


def scan(events: Iterable[AccessEvent]) -> TraceStats:
    """Count requests and distinct (tenant, key) pairs (the set is held in memory)."""
    seen: set[tuple[str, str]] = set()
    add = seen.add
    n = 0
    for n, event in enumerate(events, start=1):  # noqa: B007 - n is the count
        add((event.tenant, event.key))
    return TraceStats(n, len(seen))
