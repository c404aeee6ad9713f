"""Policy: threshold (adaptive), budgets, dedup, staleness, pending bound."""

from __future__ import annotations

import pytest

from stream_warmer.events import AccessEvent
from stream_warmer.serve.batcher import Pending
from stream_warmer.serve.policy import TokenBucket, WarmPolicy
from stream_warmer.serve.precision import PrecisionTracker
from stream_warmer.settings import PolicySettings
from stream_warmer.strategies.base import Prediction
from tests.unit.serve_fakes import FakeClock

NOW_MS = 1_800_000_000_000


def make(
    clock: FakeClock | None = None, **overrides: float | bool
) -> tuple[WarmPolicy, PrecisionTracker]:
    settings = PolicySettings(**overrides)  # type: ignore[arg-type]
    precision = PrecisionTracker(settings.precision_horizon_s)
    policy = WarmPolicy(settings, precision, clock=clock or FakeClock(), wall_ms=lambda: NOW_MS,
                        topic="events")
    return policy, precision


def cause(tenant: str = "acme", age_ms: int = 0, offset: int = 7) -> Pending:
    return Pending(tenant, 3, offset, AccessEvent(tenant, "k0", NOW_MS - age_ms))


def preds(*pairs: tuple[str, float]) -> list[Prediction]:
    return [Prediction(k, s) for k, s in pairs]


def test_accepted_predictions_become_commands_with_score_source_and_expiry() -> None:
    policy, _ = make(command_ttl_s=60)
    assert policy.decide(cause(), preds(("k1", 0.9), ("k2", 0.5)), "markov", "v3") == 2
    first, second = policy.take()
    assert (first.tenant, first.key, first.score, first.strategy, first.model_version) == (
        "acme", "k1", 0.9, "markov", "v3")
    assert first.source == "events/3/7" and second.key == "k2"
    assert first.issued_at == NOW_MS and first.expires_at == NOW_MS + 60_000
    assert policy.take() == []


def test_below_threshold_is_dropped() -> None:
    policy, _ = make(min_confidence=0.3)
    assert policy.decide(cause(), preds(("k1", 0.29), ("k2", 0.3)), "m", "v") == 1
    assert policy.drops["threshold"] == 1


def test_the_threshold_rises_for_a_tenant_with_poor_precision() -> None:
    policy, precision = make(min_confidence=0.1)
    for i in range(40):  # acme's warms are never used
        precision.issued("acme", str(i), now=0.0)
    precision.expire(now=1e6)
    assert policy.threshold("acme") == pytest.approx(0.5)  # 0.1 * (1 + 4 * (1 - 0))
    assert policy.threshold("other") == 0.1
    assert policy.decide(cause("acme"), preds(("k1", 0.4)), "m", "v") == 0
    assert policy.decide(cause("other"), preds(("k1", 0.4)), "m", "v") == 1
    fixed, precision = make(min_confidence=0.1, adaptive_threshold=False)
    assert fixed.threshold("acme") == 0.1


def test_a_key_is_not_warmed_twice_within_the_dedup_ttl() -> None:
    clock = FakeClock()
    policy, _ = make(clock, dedup_ttl_s=30)
    assert policy.decide(cause(), preds(("k1", 0.9)), "m", "v") == 1
    assert policy.decide(cause(), preds(("k1", 0.9)), "m", "v") == 0
    assert policy.decide(cause("other"), preds(("k1", 0.9)), "m", "v") == 1  # per tenant
    assert policy.drops["dedup"] == 1
    clock.advance(30.0)
    assert policy.decide(cause(), preds(("k1", 0.9)), "m", "v") == 1


def test_released_commands_may_be_issued_again() -> None:
    policy, _ = make()
    policy.decide(cause(), preds(("k1", 0.9)), "m", "v")
    policy.release(policy.take())  # the sink never wrote them
    assert policy.decide(cause(), preds(("k1", 0.9)), "m", "v") == 1


def test_stale_predictions_are_dropped() -> None:
    policy, _ = make(stale_after_ms=5000)
    assert policy.decide(cause(age_ms=5001), preds(("k1", 0.9), ("k2", 0.9)), "m", "v") == 0
    assert policy.drops["stale"] == 2
    assert policy.decide(cause(age_ms=4000), preds(("k1", 0.9)), "m", "v") == 1


def test_per_tenant_budget_refills_over_time() -> None:
    clock = FakeClock()
    policy, _ = make(clock, tenant_budget_per_s=2, dedup_ttl_s=0.001)
    many = preds(*[(f"k{i}", 0.9) for i in range(5)])
    assert policy.decide(cause(), many, "m", "v") == 2
    assert policy.drops["tenant_budget"] == 3
    assert policy.decide(cause("other"), many, "m", "v") == 2  # its own bucket
    clock.advance(0.5)  # one token back
    assert policy.decide(cause(), preds(("x", 0.9), ("y", 0.9)), "m", "v") == 1


def test_global_budget_caps_all_tenants_together() -> None:
    policy, _ = make(global_budget_per_s=3, tenant_budget_per_s=100)
    total = sum(policy.decide(cause(f"t{i}"), preds(("k1", 0.9), ("k2", 0.9)), "m", "v")
                for i in range(3))
    assert total == 3 and policy.drops["global_budget"] == 3


def test_pending_commands_are_bounded() -> None:
    policy, _ = make(max_pending=2)
    assert policy.decide(cause(), preds(("a", 0.9), ("b", 0.9), ("c", 0.9)), "m", "v") == 2
    assert policy.drops["pending_full"] == 1
    policy.take()
    assert policy.decide(cause(), preds(("c", 0.9)), "m", "v") == 1


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.available(0.0)
    bucket.take()
    bucket.take()
    assert not bucket.available(0.05)
    assert bucket.available(0.1)
