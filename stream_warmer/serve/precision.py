"""Online warm precision: a warmed key requested by its tenant within the horizon is useful.

Every warm command written is *outstanding* until its tenant requests the key
(useful) or the horizon passes (expired). Precision is useful / (useful + expired),
overall (for the metric) and per tenant as an exponentially weighted average (for
the adaptive threshold of the policy). Memory is bounded: at most ``max_outstanding``
warms are tracked (the oldest are dropped and counted) and at most ``max_tenants``
per-tenant averages are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class _TenantPrecision:
    __slots__ = ("ewma", "resolved")

    def __init__(self) -> None:
        self.ewma = 0.0
        self.resolved = 0


class PrecisionTracker:
    """Which warms turned out useful, overall and per tenant."""

    def __init__(
        self,
        horizon_s: float,
        max_outstanding: int = 1_000_000,
        max_tenants: int = 100_000,
        alpha: float = 0.05,
    ) -> None:
        if horizon_s <= 0 or max_outstanding < 1 or max_tenants < 1 or not 0 < alpha <= 1:
            msg = (
                f"bad precision bounds: horizon_s={horizon_s} max_outstanding={max_outstanding} "
                f"max_tenants={max_tenants} alpha={alpha}"
            )
            raise ValueError(msg)
        self._horizon_s = horizon_s
        self._max_outstanding = max_outstanding
        self._max_tenants = max_tenants
        self._alpha = alpha
        self._outstanding: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._tenants: OrderedDict[str, _TenantPrecision] = OrderedDict()
        self.useful = 0
        self.expired = 0
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._outstanding)

    def issued(self, tenant: str, key: str, now: float) -> None:
        """A warm command for ``(tenant, key)`` was written at ``now`` (seconds)."""
        pair = (tenant, key)
        if pair in self._outstanding:
            self._outstanding.move_to_end(pair)
        self._outstanding[pair] = now
        if len(self._outstanding) > self._max_outstanding:
            self._outstanding.popitem(last=False)
            self.overflowed += 1

    def requested(self, tenant: str, key: str) -> bool:
        """The tenant asked for ``key``: True when that resolves an outstanding warm."""
        if not self._outstanding or self._outstanding.pop((tenant, key), None) is None:
            return False
        self.useful += 1
        self._resolve(tenant, 1.0)
        return True

    def expire(self, now: float) -> int:
        """Resolve warms older than the horizon as not useful; return how many."""
        cutoff = now - self._horizon_s
        count = 0
        while self._outstanding:
            (tenant, _key), issued_at = next(iter(self._outstanding.items()))
            if issued_at > cutoff:
                break
            self._outstanding.popitem(last=False)
            self._resolve(tenant, 0.0)
            count += 1
        self.expired += count
        return count

    def precision(self) -> float | None:
        """Overall useful / resolved, or None before anything resolved."""
        resolved = self.useful + self.expired
        return self.useful / resolved if resolved else None

    def tenant_precision(self, tenant: str, min_resolved: int = 20) -> float | None:
        """The tenant's recent precision, or None with fewer than ``min_resolved`` warms."""
        stats = self._tenants.get(tenant)
        if stats is None or stats.resolved < min_resolved:
            return None
        return stats.ewma

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop the per-tenant averages of evicted or revoked tenants."""
        for tenant in tenants:
            self._tenants.pop(tenant, None)

    def _resolve(self, tenant: str, hit: float) -> None:
        stats = self._tenants.get(tenant)
        if stats is None:
            stats = self._tenants[tenant] = _TenantPrecision()
            if len(self._tenants) > self._max_tenants:
                self._tenants.popitem(last=False)
        stats.resolved += 1
        # a plain mean until the average has enough history, then exponential
        weight = max(self._alpha, 1.0 / stats.resolved)
        stats.ewma += weight * (hit - stats.ewma)
