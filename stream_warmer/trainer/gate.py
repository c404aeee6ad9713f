"""The promotion gate: publish a candidate only if it beats the live model.

The candidate, the live model (if any) and the baselines are replayed through the
warm-eval protocol (DESIGN §5, ``evaluation.warmeval``) on the most recent held-out
slice of the buffer, which no model trained on. The score of a strategy is its mean
hit ratio over the gate's cache fractions, with every warm applied ``delay`` requests
late (the delay serve measures, ``serve.delay``: a candidate is judged at the delay it
will serve at). The reference is the live model's score,
or, before any model was published, the best baseline's (the baselines are what
serves then). The candidate passes when ``score > reference + margin``, and, when a
live model exists, at the live model's warm budget: its warms per request at most the
live model's times ``1 + warm_slack`` (a new version must not buy its gain with more
warms). Against the baselines there is no warm cap: the best of them may hit nothing
and warm little, and the online budget controller holds a served model below the
better baseline's warm rate anyway (``model.cache_capacity``). Every number goes into
the manifest, so an operator can see why a version was published or not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from stream_warmer.evaluation.warmeval import EvalRow, StrategySpec, evaluate
from stream_warmer.events import AccessEvent
from stream_warmer.strategies.base import WarmingStrategy

CANDIDATE = "candidate"
LIVE = "live"


@dataclass(frozen=True, slots=True)
class Score:
    """Mean hit ratio and warms per request of one strategy over the gate's caches."""

    hit_ratio: float
    warms_per_request: float


@dataclass(frozen=True, slots=True)
class GateResult:
    """The decision and the numbers behind it."""

    passed: bool
    candidate: Score
    live: Score | None
    baseline_name: str
    baseline: Score | None
    reference: float
    margin: float
    holdout_events: int
    rows: tuple[EvalRow, ...]
    warm_cap: float | None = None  # the most warms per request the candidate may issue
    reason: str = ""
    delay: int = 0  # requests each warm was applied late

    def metrics(self) -> dict[str, float | str | bool | None]:
        """Flat numbers for the manifest and the model-update message."""
        out: dict[str, float | str | bool | None] = {
            "gate_passed": self.passed,
            "gate_margin": self.margin,
            "gate_reference": _finite(self.reference),
            "gate_holdout_events": float(self.holdout_events),
            "gate_delay": float(self.delay),
            "candidate_hit_ratio": _finite(self.candidate.hit_ratio),
            "candidate_warms_per_request": _finite(self.candidate.warms_per_request),
            "best_baseline": self.baseline_name,
            "gate_reason": self.reason,
        }
        if self.warm_cap is not None:
            out["gate_warm_cap"] = _finite(self.warm_cap)
        if self.live is not None:
            out["live_hit_ratio"] = _finite(self.live.hit_ratio)
        if self.baseline is not None:
            out["baseline_hit_ratio"] = _finite(self.baseline.hit_ratio)
            out["baseline_warms_per_request"] = _finite(self.baseline.warms_per_request)
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def prefeed(strategies: Iterable[WarmingStrategy], events: Sequence[AccessEvent]) -> None:
    """Let online strategies (the baselines) learn from the training slice first."""
    for strategy in strategies:
        for event in events:
            strategy.observe(event)


def run_gate(
    holdout: Sequence[AccessEvent],
    candidate: WarmingStrategy,
    live: WarmingStrategy | None,
    baselines: Mapping[str, WarmingStrategy],
    *,
    k: int,
    fracs: Sequence[float],
    margin: float,
    warm_slack: float = 0.1,
    delay: int = 0,
) -> GateResult:
    """Score everyone on ``holdout`` and decide (see the module docstring)."""
    if not holdout:
        msg = "the gate needs a non-empty held-out slice"
        raise ValueError(msg)
    named = {CANDIDATE: candidate, **({LIVE: live} if live is not None else {}), **baselines}
    # one k, so each factory is called once: the instances given here are evaluated
    specs = [StrategySpec(name, _const(s)) for name, s in named.items()]
    rows = evaluate("holdout", lambda: holdout, specs, [k], fracs, delays=[delay])
    scores = {name: _score(rows, name) for name in named}
    base_name = max(baselines, key=lambda n: _rank(scores[n]), default="")
    base = scores.get(base_name)
    live_score = scores.get(LIVE)
    ref_score = live_score if live_score is not None else base
    reference = ref_score.hit_ratio if ref_score is not None else 0.0
    cap = None
    # a live model that warms nothing sets no budget (it would block every warming one)
    if live_score is not None and 0 < live_score.warms_per_request < math.inf:
        cap = live_score.warms_per_request * (1.0 + warm_slack)
    cand, passed = scores[CANDIDATE], False
    if not _rank(cand) > reference + margin:
        reason = "hit ratio not above the reference + margin"
    elif cap is not None and not cand.warms_per_request <= cap:
        reason = "more warms per request than the live model's budget allows"
    else:
        reason, passed = "better hit ratio within the warm budget", True
    return GateResult(
        passed=passed,
        candidate=scores[CANDIDATE],
        live=live_score,
        baseline_name=base_name,
        baseline=base,
        reference=reference,
        margin=margin,
        holdout_events=len(holdout),
        rows=tuple(rows),
        warm_cap=cap,
        reason=reason,
        delay=delay,
    )


def _const(strategy: WarmingStrategy) -> Callable[[], WarmingStrategy]:
    return lambda: strategy


def _score(rows: Sequence[EvalRow], name: str) -> Score:
    mine = [r for r in rows if r.strategy == name]
    hit = sum(r.hit_ratio for r in mine) / len(mine)
    warms = sum(r.warms_per_request for r in mine) / len(mine)
    return Score(hit, warms)


def _rank(score: Score) -> float:
    return score.hit_ratio if math.isfinite(score.hit_ratio) else -math.inf
