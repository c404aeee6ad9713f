"""Feature spec fitting and the candidate tracker."""

from __future__ import annotations

import pytest

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import (
    TABLE_BYTES,
    FeatureSpec,
    fit_spec,
    parse_key,
    signed_log_bucket,
)
from stream_warmer.model.tracker import CandidateTracker


def _ev(tenant: str, key: str, ts: int, size: int | None = None) -> AccessEvent:
    return AccessEvent(tenant=tenant, key=key, ts=ts, size=size)


def test_parse_key_keeps_non_canonical_keys_as_strings() -> None:
    assert parse_key("42") == 42
    assert parse_key("042") == "042"
    assert parse_key("user:1") == "user:1"


def test_fit_spec_finds_size_unit_and_deltas() -> None:
    events = [_ev("a", str(1000 + 8 * i), i, size=4096) for i in range(300)]
    spec = fit_spec(events)
    assert spec.size_unit == 512
    assert spec.deltas[0] == 8


def test_a_lead_exists_only_with_a_window() -> None:
    events = [_ev("a", str(i % 7), i) for i in range(300)]
    assert fit_spec(events, ahead_lead=12).ahead_lead == 0  # no AHEAD classes
    ahead = fit_spec(events, ahead_window=16, ahead_ranks=2, ahead_lead=12)
    assert (ahead.ahead_window, ahead.ahead_lead) == (16, 12)
    assert ahead.with_lead(4) == fit_spec(events, ahead_window=16, ahead_ranks=2, ahead_lead=4)
    assert FeatureSpec().with_lead(4) == FeatureSpec()


def test_spec_json_round_trip() -> None:
    spec = FeatureSpec(deltas=(1, -3), gap_edges=(0.1, 0.7), size_edges=(2.0,))
    assert FeatureSpec.from_json(spec.to_json()) == spec


def test_a_manifest_from_before_the_table_budget_loads_with_the_default() -> None:
    old = FeatureSpec(max_keys_per_tenant=50_000).to_json()
    del old["table_bytes"]
    spec = FeatureSpec.from_json(old)
    assert spec.table_bytes == TABLE_BYTES and spec.max_keys_per_tenant == 50_000
    for bad in ({"table_bytes": 0}, {"max_keys_per_tenant": 0}):
        with pytest.raises(ValueError, match="invalid feature spec"):
            FeatureSpec.from_json(spec.to_json() | bad)


def test_tracker_marks_the_classes_that_were_right() -> None:
    spec = FeatureSpec(deltas=(1,), ranks=2)
    tracker = CandidateTracker(spec)
    for key in ("10", "20", "10", "20", "10"):
        step = tracker.step(_ev("t", key, 0))
    # after 10 -> 20 twice, the rank-1 successor of 10 is 20
    assert step.cands[1] == 20
    step = tracker.step(_ev("t", "20", 0))
    assert step.correct & (1 << 1)  # the successor class was right
    assert not step.correct & 1  # so NO-WARM was not


def test_no_warm_is_right_when_nothing_matched() -> None:
    tracker = CandidateTracker(FeatureSpec(deltas=(1,)))
    tracker.step(_ev("t", "5", 0))
    assert tracker.step(_ev("t", "900", 1)).correct == 1


def test_tenants_are_independent_and_forgettable() -> None:
    tracker = CandidateTracker(FeatureSpec())
    tracker.step(_ev("a", "1", 0))
    tracker.step(_ev("b", "7", 0))
    assert tracker.step(_ev("a", "2", 1)).cands[3] == 3  # size stride (unit 1) from a's key
    tracker.forget("a")
    assert len(tracker) == 1


def test_successor_table_is_bounded() -> None:
    spec = FeatureSpec(max_successors=2, max_keys_per_tenant=3)
    tracker = CandidateTracker(spec)
    for i in range(50):
        tracker.step(_ev("t", str(i % 7), i))
    assert tracker.table_len("t") == 3
    assert all(len(tracker.top_successors("t", k, 9)) <= 2 for k in range(7))


def test_signed_log_bucket_separates_signs() -> None:
    assert signed_log_bucket(0) == 1
    assert signed_log_bucket(8) != signed_log_bucket(-8)


def test_parse_key_reads_ascii_digits_only() -> None:
    # "²".isdigit() is True and int("²") raised; "١٢" became 12, aliasing key "12"
    assert parse_key("²") == "²"
    assert parse_key("١٢") == "١٢"
    assert parse_key("\uff11\uff12") == "\uff11\uff12"
    assert parse_key("12") == 12


def test_the_tracker_takes_unicode_digit_keys_as_strings() -> None:
    tracker = CandidateTracker(FeatureSpec(deltas=(1,)))
    for key in ("11", "²", "12", "١٢", "13"):
        step = tracker.step(_ev("t", key, 0))  # a ValueError here crash-looped serve
    assert tracker.knows("t", "١٢") and tracker.knows("t", 12)  # two keys, not one
    assert step.cands[3] == 14  # integer keys still stride
