"""Online precision: useful when requested within the horizon; bounded."""

from __future__ import annotations

import pytest

from stream_warmer.serve.precision import PrecisionTracker


def test_requested_within_the_horizon_is_useful_else_expired() -> None:
    tracker = PrecisionTracker(horizon_s=10.0)
    tracker.issued("a", "k1", now=0.0)
    tracker.issued("a", "k2", now=0.0)
    tracker.issued("b", "k1", now=5.0)
    assert tracker.requested("a", "k1") is True
    assert tracker.requested("a", "k1") is False  # counted once
    assert tracker.requested("a", "other") is False
    assert tracker.expire(now=10.0) == 1  # a/k2; b/k1 is younger
    assert tracker.requested("b", "k1") is True
    assert (tracker.useful, tracker.expired) == (2, 1)
    assert tracker.precision() == pytest.approx(2 / 3)


def test_no_precision_before_anything_resolved() -> None:
    tracker = PrecisionTracker(horizon_s=1.0)
    assert tracker.precision() is None
    assert tracker.tenant_precision("a") is None


def test_tenant_precision_needs_enough_history() -> None:
    tracker = PrecisionTracker(horizon_s=1.0)
    for i in range(20):
        tracker.issued("a", str(i), now=0.0)
        if i % 4 == 0:
            tracker.requested("a", str(i))
        if i == 10:
            assert tracker.tenant_precision("a") is None
    tracker.expire(now=2.0)
    assert tracker.tenant_precision("a") == pytest.approx(0.25, abs=0.1)
    tracker.forget(["a"])
    assert tracker.tenant_precision("a") is None


def test_outstanding_warms_are_bounded() -> None:
    tracker = PrecisionTracker(horizon_s=10.0, max_outstanding=3)
    for i in range(5):
        tracker.issued("a", str(i), now=0.0)
    assert len(tracker) == 3 and tracker.overflowed == 2
    assert tracker.requested("a", "0") is False
    assert tracker.requested("a", "4") is True


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon_s"):
        PrecisionTracker(horizon_s=0)
