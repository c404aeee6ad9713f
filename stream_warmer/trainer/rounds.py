"""One training round: snapshot -> split -> train (warm start) -> gate -> publish.

The model code is injected (``TrainFn``, ``LoadFn``) so that this module knows only
the artifact protocol (safetensors bytes + manifest dict); ``trainer.lstm`` binds it
to the LSTM package. A round never raises for a bad live model (it trains from
scratch and gates against the baselines instead) and reports its outcome as a value.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from stream_warmer.events import AccessEvent
from stream_warmer.settings import StrategySettings, TrainerSettings
from stream_warmer.strategies import build_baseline
from stream_warmer.strategies.base import WarmingStrategy
from stream_warmer.trainer import metrics as m
from stream_warmer.trainer.buffer import to_events
from stream_warmer.trainer.gate import GateResult, prefeed, run_gate
from stream_warmer.trainer.publish import ModelPublisher
from stream_warmer.trainer.store import Artifact
from stream_warmer.trainer.updates import ModelUpdate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A freshly trained model: the strategy to gate and the artifact to publish."""

    strategy: WarmingStrategy
    artifact: Artifact


# train(train_events, live_artifact_or_None, delay) -> Candidate (warm start when it
# can; for warms that land ``delay`` requests after they are named)
TrainFn = Callable[[Sequence[AccessEvent], Artifact | None, int], Candidate]
# load(artifact, version) -> strategy stamping ``version``; raises ModelError if bad
LoadFn = Callable[[Artifact, str], WarmingStrategy]


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What a round did: ``published``, ``rejected`` (gate), ``skipped`` or ``failed``."""

    outcome: str
    events: int
    seconds: float
    gate: GateResult | None = None
    update: ModelUpdate | None = None
    detail: str = ""


def split(events: Sequence[AccessEvent], gate_fraction: float) -> tuple[list[AccessEvent], ...]:
    """Time-ordered split: everything before the newest ``gate_fraction`` trains."""
    n_gate = max(1, math.floor(len(events) * gate_fraction))
    return list(events[:-n_gate]), list(events[-n_gate:])


@dataclass
class TrainingRound:
    """Everything a round needs, built once by the service."""

    settings: TrainerSettings
    strategy: StrategySettings
    publisher: ModelPublisher
    train: TrainFn
    load: LoadFn
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    # the delay in requests a round trains for and the gate applies
    # (``trainer.gate_delay``; -1 reads serve's)
    serve_delay: Callable[[], int] = lambda: 0

    def __call__(self, frame: pd.DataFrame) -> RoundResult:
        """Run one round on a buffer snapshot; never raises for model problems."""
        started = time.perf_counter()
        try:
            result = self._run(frame, started)
        except Exception as exc:  # thread boundary: a failed round must not stop the trainer
            log.exception("training round failed", extra={"events": len(frame)})
            result = RoundResult(
                "failed", len(frame), time.perf_counter() - started, detail=str(exc)
            )
        m.TRAINER_ROUNDS.labels(result.outcome).inc()
        m.TRAINER_ROUND_SECONDS.observe(result.seconds)
        return result

    def _run(self, frame: pd.DataFrame, started: float) -> RoundResult:
        if len(frame) < self.settings.min_events:
            detail = f"{len(frame)} events < min_events {self.settings.min_events}"
            return RoundResult("skipped", len(frame), time.perf_counter() - started, detail=detail)
        train_events, holdout = split(to_events(frame), self.settings.gate_fraction)
        live_update, live_artifact, live = self._live()
        log.info(
            "training round: training",
            extra={
                "train_events": len(train_events),
                "holdout_events": len(holdout),
                "warm_start": live_update.version if live_update else None,
            },
        )
        delay = self.settings.gate_delay if self.settings.gate_delay >= 0 else self.serve_delay()
        candidate = self.train(train_events, live_artifact, delay)
        gate = self._gate(train_events, holdout, candidate, live, delay)
        seconds = time.perf_counter() - started
        if not gate.passed:
            return RoundResult("rejected", len(frame), seconds, gate)
        update = self.publisher.publish(candidate.artifact, gate.metrics(), self.wall_ms())
        return RoundResult("published", len(frame), time.perf_counter() - started, gate, update)

    def _live(self) -> tuple[ModelUpdate | None, Artifact | None, WarmingStrategy | None]:
        update = self.publisher.live()
        if update is None:
            return None, None, None
        try:
            artifact = self.publisher.store.fetch(update)
            return update, artifact, self.load(artifact, update.version)
        except Exception as exc:  # a bad live artifact must not block training
            log.warning("live model unusable; training from scratch", extra={"error": str(exc)})
            return update, None, None

    def _gate(
        self,
        train_events: Sequence[AccessEvent],
        holdout: Sequence[AccessEvent],
        candidate: Candidate,
        live: WarmingStrategy | None,
        delay: int,
    ) -> GateResult:
        baselines: dict[str, WarmingStrategy] = {
            name: build_baseline(name, self.strategy) for name in self.settings.gate_baselines
        }
        prefeed(baselines.values(), train_events)
        gate = run_gate(
            holdout,
            candidate.strategy,
            live,
            baselines,
            k=self.strategy.k,
            fracs=self.settings.gate_cache_fracs,
            margin=self.settings.promote_margin,
            warm_slack=self.settings.promote_warm_slack,
            delay=delay,
        )
        m.TRAINER_GATE_HIT_RATIO.labels("candidate").set(gate.candidate.hit_ratio)
        if gate.live is not None:
            m.TRAINER_GATE_HIT_RATIO.labels("live").set(gate.live.hit_ratio)
        if gate.baseline is not None:
            m.TRAINER_GATE_HIT_RATIO.labels("baseline").set(gate.baseline.hit_ratio)
        log.info("training round: gate", extra=gate.metrics())
        return gate
