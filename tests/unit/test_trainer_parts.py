"""Trainer pieces without services: update messages, buffer, schedule, gate."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stream_warmer.events import AccessEvent
from stream_warmer.settings import StrategySettings
from stream_warmer.strategies import build_baseline
from stream_warmer.strategies.base import Prediction, Window
from stream_warmer.trainer.buffer import EventBuffer, to_events
from stream_warmer.trainer.gate import prefeed, run_gate
from stream_warmer.trainer.service import Schedule
from stream_warmer.trainer.updates import (
    BadUpdate,
    ModelUpdate,
    decode_update,
    encode_update,
    new_version,
)
from tests.unit.trainer_fakes import DeltaStrategy, stride_events


def make_update(version: str = "v1") -> ModelUpdate:
    return ModelUpdate(
        name="m",
        version=version,
        sha256="a" * 64,
        artifact="redis:x",
        manifest_sha256="b" * 64,
        arch={"hidden": 16},
        vocab_version="voc",
        metrics={"gate_passed": True, "x": None},
        created_at=5,
    )


def test_update_roundtrip() -> None:
    update = make_update()
    assert decode_update(encode_update(update)) == update


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(None, "empty"), (b"", "empty"), (b"{nope", "not_json"), (b'{"name": "m"}', "schema")],
)
def test_bad_update_is_a_value(payload: bytes | None, reason: str) -> None:
    bad = decode_update(payload)
    assert isinstance(bad, BadUpdate)
    assert bad.reason == reason


def test_new_version_sorts_by_time() -> None:
    a = new_version(1_700_000_000_000, "ab" * 32)
    b = new_version(1_700_000_100_000, "00" * 32)
    assert a < b
    assert a.endswith("-abababab")


def test_buffer_is_bounded_and_keeps_newest() -> None:
    buf = EventBuffer(capacity=10)
    events = stride_events(25, tenants=1)
    for i in range(0, 25, 4):
        buf.extend(events[i : i + 4])
    assert len(buf) == 10
    assert to_events(buf.frame()) == events[-10:]


def test_to_events_sorts_by_ts_stably_and_keeps_none_size() -> None:
    buf = EventBuffer(capacity=100)
    evs = [AccessEvent("a", "1", 5), AccessEvent("b", "2", 3, "set", 7), AccessEvent("a", "3", 5)]
    buf.extend(evs)
    assert to_events(buf.frame()) == [evs[1], evs[0], evs[2]]


def test_schedule_by_events_and_by_time() -> None:
    now = [0.0]
    sched = Schedule(every_events=100, every_s=60.0, clock=lambda: now[0])
    assert not sched.due()
    sched.add(99)
    assert not sched.due()
    sched.add(1)
    assert sched.due()
    sched.started()
    sched.add(1)
    assert not sched.due()
    now[0] = 61.0
    assert sched.due()
    sched.started()
    now[0] = 200.0
    assert not sched.due()  # time passed but nothing new to learn


def _baselines(train: list[AccessEvent]) -> dict[str, object]:
    settings = StrategySettings()
    out = {n: build_baseline(n, settings) for n in ("popularity", "markov", "nextkey")}
    prefeed(out.values(), train)  # type: ignore[arg-type]
    return out


def test_gate_passes_a_candidate_that_beats_the_baselines() -> None:
    events = stride_events(2000, delta=3)
    train, holdout = events[:1600], events[1600:]
    gate = run_gate(
        holdout,
        DeltaStrategy(3),
        None,
        _baselines(train),  # type: ignore[arg-type]
        k=1,
        fracs=(0.1, 0.5),
        margin=0.0,
    )
    assert gate.passed
    assert gate.live is None
    assert gate.candidate.hit_ratio > 0.9
    assert gate.baseline is not None and gate.baseline.hit_ratio < 0.1
    assert gate.metrics()["gate_passed"] is True
    assert gate.reference == gate.baseline.hit_ratio


def test_gate_rejects_a_candidate_no_better_than_live() -> None:
    events = stride_events(2000, delta=3)
    train, holdout = events[:1600], events[1600:]
    gate = run_gate(
        holdout,
        DeltaStrategy(3),
        DeltaStrategy(3),
        _baselines(train),  # type: ignore[arg-type]
        k=1,
        fracs=(0.1,),
        margin=0.0,
    )
    assert not gate.passed
    assert gate.live is not None and gate.reference == gate.live.hit_ratio


def test_gate_margin_is_applied() -> None:
    events = stride_events(2000, delta=3)
    holdout = events[1600:]
    good, bad = DeltaStrategy(3), DeltaStrategy(1)
    assert run_gate(holdout, good, bad, {}, k=1, fracs=(0.1,), margin=0.5).passed
    assert not run_gate(holdout, good, bad, {}, k=1, fracs=(0.1,), margin=1.0).passed


class _Sometimes(DeltaStrategy):
    """``DeltaStrategy`` that warms on every ``every``-th request only."""

    def __init__(self, delta: int, every: int) -> None:
        super().__init__(delta, version="live")
        self.every, self.n = every, 0

    def predict(self, windows: Sequence[Window], k: int) -> list[list[Prediction]]:
        out = []
        for row in super().predict(windows, k):
            self.n += 1
            out.append(row if self.n % self.every == 0 else [])
        return out


def test_gate_holds_the_candidate_to_the_reference_warm_budget() -> None:
    holdout = stride_events(2000, delta=3)[1600:]
    # the live model warms 1 request in 10 (hit ~0.1); the candidate warms every one
    tight = run_gate(holdout, DeltaStrategy(3), _Sometimes(3, 10), {}, k=1, fracs=(0.1,),
                     margin=0.0, warm_slack=0.1)
    assert tight.candidate.hit_ratio > tight.reference  # better, but ...
    assert tight.live is not None and tight.warm_cap == pytest.approx(
        tight.live.warms_per_request * 1.1)
    assert tight.candidate.warms_per_request > tight.warm_cap  # ... over the budget
    assert not tight.passed and "warms per request" in tight.reason
    assert tight.metrics()["gate_warm_cap"] == tight.warm_cap
    loose = run_gate(holdout, DeltaStrategy(3), _Sometimes(3, 10), {}, k=1, fracs=(0.1,),
                     margin=0.0, warm_slack=20.0)
    assert loose.passed and loose.metrics()["gate_reason"] == loose.reason


def test_gate_judges_at_the_delay_serve_runs_at() -> None:
    """Four tenants interleaved: a warm of the key after next (+6) still lands in time
    4 requests late, one of the next key (+3) does not. At delay 0 the two tie (no
    gain, rejected); at serve's delay of 4 the look-ahead candidate wins."""
    holdout = stride_events(2000, delta=3)
    at = {d: run_gate(holdout, DeltaStrategy(6), DeltaStrategy(3, "live"), {}, k=1,
                      fracs=(0.1,), margin=0.0, delay=d) for d in (0, 4)}
    assert not at[0].passed
    assert at[4].passed
    assert at[4].live is not None and at[4].live.hit_ratio < 0.05
    assert at[4].candidate.hit_ratio > 0.9
    assert at[4].metrics()["gate_delay"] == 4.0


def test_gate_needs_a_holdout() -> None:
    with pytest.raises(ValueError, match="held-out"):
        run_gate([], DeltaStrategy(3), None, {}, k=1, fracs=(0.1,), margin=0.0)


def test_declared_vocab_version_is_the_manifests_or_a_hash_of_its_vocab() -> None:
    from stream_warmer.trainer.artifact import declared_vocab_version

    assert declared_vocab_version({"vocab_version": "abc", "vocab": ["x"]}) == "abc"
    hashed = declared_vocab_version({"vocab": ["x", "y"]})
    assert len(hashed) == 16 and hashed == declared_vocab_version({"vocab": ["x", "y"]})
    assert declared_vocab_version({}) == "none"
