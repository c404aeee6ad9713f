"""``bench live``'s pace: the events serve receives are stamped with their send time, and
the LSTM and the offline columns see those events, not the trace's timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from stream_warmer.bench import live
from stream_warmer.bench.appcache import at_pace, due_s
from stream_warmer.bench.liverun import LiveOptions
from stream_warmer.events import AccessEvent
from stream_warmer.settings import Settings

EVENTS = [AccessEvent("t", k, ts) for k, ts in (("a", 100), ("b", 350), ("c", 351), ("d", 900))]


def test_at_a_rate_the_trace_gaps_are_gone() -> None:
    assert list(due_s(EVENTS, 4.0, None)) == [0.0, 0.25, 0.5, 0.75]
    paced = at_pace(EVENTS, 4.0, None)
    assert [e.ts for e in paced] == [100, 350, 600, 850]
    assert [(e.tenant, e.key) for e in paced] == [(e.tenant, e.key) for e in EVENTS]


def test_at_a_speedup_the_trace_gaps_shrink() -> None:
    assert [e.ts for e in at_pace(EVENTS, None, 2.0)] == [100, 225, 225, 500]
    assert at_pace([], 4.0, None) == []


def test_the_lstm_trains_on_the_events_as_serve_receives_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[int]] = []

    artifact = object()

    def train(settings: Settings, events: Any) -> Any:
        seen.append([e.ts for e in events])
        return artifact

    monkeypatch.setattr(live, "_train_lstm", train)
    opts = LiveOptions(trace="t", strategies=("markov", "lstm"), rates=(4.0,))
    at = live._AtPace(Settings(), EVENTS, opts, 2, (4.0, None))
    offline, trained = at.ready()
    assert trained is artifact and seen == [[100, 350, 600, 850]]
    assert at.ready()[1] is artifact and len(seen) == 1  # once per pace
    assert [e.ts for e in offline._events] == [100, 350, 600, 850]
