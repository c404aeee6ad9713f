"""Serve's Redis outage: pause, back off (jittered, the loader's rule too), resume; and
the shared backoff itself (``stream_warmer.backoff``)."""

from __future__ import annotations

import random

from confluent_kafka import TopicPartition

from stream_warmer.backoff import Backoff, jittered_s
from stream_warmer.errors import SinkUnavailableError
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.outage import Outage
from stream_warmer.serve.stats import Offsets, RunStats
from tests.unit.serve_fakes import FakeClock


class MaxRandom:
    """An rng whose jitter always keeps the whole backoff."""

    def uniform(self, _low: float, high: float) -> float:
        return high


class PausingConsumer:
    def __init__(self) -> None:
        self.log: list[str] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("events", 0)]

    def pause(self, _partitions: list[TopicPartition]) -> None:
        self.log.append("pause")

    def resume(self, _partitions: list[TopicPartition]) -> None:
        self.log.append("resume")

    def seek(self, _tp: TopicPartition) -> None:
        self.log.append("seek")


class ProbedEngine:
    def __init__(self) -> None:
        self.up = False

    def abandon(self) -> int:
        return 0

    def sink_ready(self) -> bool:
        return self.up


def _outage(seed: int, backoff_max_s: float = 1.0) -> tuple[Outage, FakeClock]:
    clock = FakeClock()
    return Outage("events", Offsets(), ServeMetrics(), RunStats(), clock=clock,
                  backoff_max_s=backoff_max_s, rng=random.Random(seed)), clock


def _waits(outage: Outage, clock: FakeClock, engine: ProbedEngine, probes: int) -> list[float]:
    """The waits between ``probes`` failed probes, each probe at its retry time."""
    consumer = PausingConsumer()
    started = clock.now
    outage.enter(SinkUnavailableError("down"), engine, consumer)  # type: ignore[arg-type]
    waits = []
    for _ in range(probes):
        step = 0.001
        while True:  # find the retry time: nothing happens before it
            clock.advance(step)
            before = len(consumer.log)
            outage.maybe_recover(engine, consumer)  # type: ignore[arg-type]
            if len(consumer.log) > before or not outage.active:
                break
        waits.append(round(clock.now - started, 3))
        started = clock.now
    return waits


def test_retry_backoff_doubles_to_its_cap_with_bounded_deterministic_jitter() -> None:
    engine = ProbedEngine()
    first, clock = _outage(seed=7)
    waits = _waits(first, clock, engine, 7)
    for wait, full in zip(waits, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], strict=True):
        assert full / 2 - 0.002 <= wait <= full + 0.002
    assert len(set(waits[4:])) > 1  # capped waits still spread (replicas do not probe in step)
    again, clock = _outage(seed=7)
    assert _waits(again, clock, engine, 7) == waits  # an injected rng: the same waits


def test_jitter_stays_within_half_and_full_of_the_backoff() -> None:
    backoff = Backoff(10.0, rng=random.Random(1))
    for failures, full in [(0, 0.1), (1, 0.2), (3, 0.8), (10, 10.0), (10_000, 10.0)]:
        waits = [backoff.wait_s(failures) for _ in range(300)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > full / 4
    assert jittered_s(-1, 0.1, 1.0, random.Random(1)) <= 0.1  # never below the first


def test_the_shared_backoff_starts_over_only_long_after_a_recovery() -> None:
    top = MaxRandom()
    backoff = Backoff(1.0, rng=top)  # type: ignore[arg-type]
    assert [backoff.start(0.0), backoff.again(), backoff.again()] == [0.1, 0.2, 0.4]
    backoff.recovered(1.0)
    assert backoff.start(1.5) == 0.8  # flapping: goes on from where it was
    backoff.recovered(2.0)
    assert backoff.start(3.0) == 0.1  # max_s after the recovery: a new outage


def test_an_outage_right_after_a_recovery_goes_on_backing_off() -> None:
    engine = ProbedEngine()
    outage, clock = _outage(seed=3, backoff_max_s=1.0)
    consumer = PausingConsumer()
    outage.enter(SinkUnavailableError("down"), engine, consumer)  # type: ignore[arg-type]
    engine.up = True
    clock.advance(0.2)
    outage.maybe_recover(engine, consumer)  # type: ignore[arg-type]
    assert not outage.active and consumer.log[-1] == "resume"
    for expected_min in (0.1, 0.2):  # flapping: each comes back after a longer wait
        outage.enter(SinkUnavailableError("writes fail"), engine, consumer)  # type: ignore[arg-type]
        clock.advance(expected_min - 0.001)
        outage.maybe_recover(engine, consumer)  # type: ignore[arg-type]
        assert outage.active
        clock.advance(2.0)
        outage.maybe_recover(engine, consumer)  # type: ignore[arg-type]
        assert not outage.active
    clock.advance(5.0)  # long after the last recovery: a new outage starts over
    outage.enter(SinkUnavailableError("down"), engine, consumer)  # type: ignore[arg-type]
    clock.advance(0.1)
    outage.maybe_recover(engine, consumer)  # type: ignore[arg-type]
    assert not outage.active
