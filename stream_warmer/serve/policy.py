"""Policy between strategy and sinks: which predictions become warm commands.

For each prediction, in this order (the first failing check names the drop reason):

1. ``stale``      the event that caused it is older than ``stale_after_ms``;
2. ``answered``   the tenant requested the key after the cause, in the same
   micro-batch: the warm would land after the request it predicts (the request has
   put the key in the cache already), so writing it costs a command and buys nothing;
3. ``threshold``  its score is below the tenant's threshold: ``min_confidence``,
   raised when the tenant's measured precision is low (``adaptive_threshold``);
4. ``dedup``      the same (tenant, key) was issued within ``dedup_ttl_s``;
5. ``tenant_budget`` / ``global_budget``  token buckets in commands per second, so
   warm traffic never starves real traffic;
6. ``pending_full`` more than ``max_pending`` commands wait for the sinks.

Accepted commands keep the score as their priority. All state is bounded; time is
injected (``clock`` in monotonic seconds, ``wall_ms`` in epoch milliseconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet

from stream_warmer.events import WarmCommand
from stream_warmer.serve.batcher import Pending
from stream_warmer.serve.precision import PrecisionTracker
from stream_warmer.settings import PolicySettings
from stream_warmer.strategies.base import Prediction

DROP_REASONS = ("stale", "answered", "threshold", "dedup", "tenant_budget", "global_budget",
                "pending_full")
# with precision p the threshold is min_confidence * (1 + ADAPT_GAIN * (1 - p))
ADAPT_GAIN = 4.0
MAX_THRESHOLD = 0.95


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def available(self, now: float) -> bool:
        """Refill for the time passed; True when at least one token is left."""
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
        return self._tokens >= 1.0

    def take(self) -> None:
        """Spend one token (call after ``available`` said yes)."""
        self._tokens -= 1.0


class WarmPolicy:
    """Turn predictions into warm commands; holds them until the sinks take them."""

    def __init__(
        self,
        settings: PolicySettings,
        precision: PrecisionTracker,
        *,
        clock: Callable[[], float],
        wall_ms: Callable[[], int],
        topic: str,
        max_tenants: int = 100_000,
        max_dedup: int = 1_000_000,
    ) -> None:
        self._s = settings
        self._precision = precision
        self._clock = clock
        self._wall_ms = wall_ms
        self._topic = topic
        self._max_tenants = max_tenants
        self._max_dedup = max_dedup
        self._dedup: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        rate = settings.global_budget_per_s
        self._global = TokenBucket(rate, max(1.0, rate), clock())
        self.pending: list[WarmCommand] = []
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    def threshold(self, tenant: str) -> float:
        """The tenant's confidence threshold (raised when its precision is low)."""
        base = self._s.min_confidence
        if not self._s.adaptive_threshold:
            return base
        measured = self._precision.tenant_precision(tenant)
        if measured is None:
            return base
        return min(MAX_THRESHOLD, max(base, base * (1.0 + ADAPT_GAIN * (1.0 - measured))))

    def decide(
        self,
        cause: Pending,
        predictions: Sequence[Prediction],
        strategy: str,
        version: str,
        answered: AbstractSet[str] = frozenset(),
    ) -> int:
        """Queue the commands ``predictions`` earn; return how many were accepted.

        ``answered``: keys the tenant requested after ``cause`` (in the same batch).
        """
        if not predictions:
            return 0
        now_ms = self._wall_ms()
        if now_ms - cause.event.ts > self._s.stale_after_ms:
            self.drops["stale"] += len(predictions)
            return 0
        now = self._clock()
        self._expire_dedup(now)
        threshold = self.threshold(cause.tenant)
        source = self.source(cause)
        expires = now_ms + int(self._s.command_ttl_s * 1000)
        accepted = 0
        for pred in predictions:
            if pred.key in answered:
                self.drops["answered"] += 1
                continue
            reason = self._check(cause.tenant, pred, threshold, now)
            if reason is not None:
                self.drops[reason] += 1
                continue
            self._dedup[(cause.tenant, pred.key)] = now + self._s.dedup_ttl_s
            self.pending.append(WarmCommand(
                cause.tenant, pred.key, float(pred.score), strategy, version, source,
                now_ms, expires,
            ))
            accepted += 1
        self._bound_dedup()
        return accepted

    def source(self, cause: Pending) -> str:
        """The ``source`` of the commands ``cause`` earns: its topic/partition/offset."""
        return f"{self._topic}/{cause.partition}/{cause.offset}"

    def take(self) -> list[WarmCommand]:
        """Hand the queued commands to the sinks."""
        out, self.pending = self.pending, []
        return out

    def release(self, commands: Iterable[WarmCommand]) -> None:
        """Forget the dedup marks of commands that were never written (sink down)."""
        for cmd in commands:
            self._dedup.pop((cmd.tenant, cmd.key), None)

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop the budgets of evicted or revoked tenants."""
        for tenant in tenants:
            self._buckets.pop(tenant, None)

    def _check(self, tenant: str, pred: Prediction, threshold: float, now: float) -> str | None:
        if pred.score < threshold:
            return "threshold"
        if (tenant, pred.key) in self._dedup:
            return "dedup"
        bucket = self._bucket(tenant, now)
        if not bucket.available(now):
            return "tenant_budget"
        if not self._global.available(now):
            return "global_budget"
        if len(self.pending) >= self._s.max_pending:
            return "pending_full"
        bucket.take()
        self._global.take()
        return None

    def _bucket(self, tenant: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(tenant)
        if bucket is None:
            rate = self._s.tenant_budget_per_s
            bucket = self._buckets[tenant] = TokenBucket(rate, max(1.0, rate), now)
            if len(self._buckets) > self._max_tenants:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant)
        return bucket

    def _expire_dedup(self, now: float) -> None:
        # entries are inserted with a constant TTL, so insertion order is expiry order
        while self._dedup:
            expiry = next(iter(self._dedup.values()))
            if expiry > now:
                return
            self._dedup.popitem(last=False)

    def _bound_dedup(self) -> None:
        while len(self._dedup) > self._max_dedup:
            self._dedup.popitem(last=False)
