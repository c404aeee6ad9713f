"""The loader's side of the warm queues: find tenants, pop their entries, wait for work.

The layout and the ``POP`` script are :mod:`stream_warmer.warmqueue` (shared with
serve's writer); this module only runs them. What counts as "the queue Redis is
unavailable" is serve's too (``redisfaults.unavailable``: no answer, a replica after a
failover, OOM, a busy script, loading); any other error reply raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from redis.exceptions import NoScriptError, RedisError

from stream_warmer.load.outage import UnavailableError
from stream_warmer.redisfaults import unavailable
from stream_warmer.warmqueue import (
    POP,
    QueueEntry,
    expiry_key,
    parse_popped,
    queue_key,
    tenants_key,
    wake_key,
)

MIN_BLOCK_S = 0.001  # BLPOP's timeout 0 would block for ever


def fair_shares(tenants: Sequence[str], budget: int, per_tenant: int,
                start: int) -> list[tuple[str, int]]:
    """Round robin: ``budget`` entries spread evenly (at most ``per_tenant`` each) over
    ``tenants``, beginning at index ``start``; the caller resumes after the last one."""
    if not tenants or budget <= 0:
        return []
    first = start % len(tenants)
    order = [*tenants[first:], *tenants[:first]]
    per = min(per_tenant, -(-budget // len(order)))
    shares: list[tuple[str, int]] = []
    for tenant in order:
        take = min(per, budget)
        if take <= 0:
            break
        shares.append((tenant, take))
        budget -= take
    return shares


def _raise(command: str, exc: RedisError) -> NoReturn:
    """Raise ``UnavailableError`` for an outage, ``exc`` itself for a bug."""
    if not unavailable(exc):
        raise exc
    msg = f"queue redis unavailable ({command}): {exc}"
    raise UnavailableError(msg) from exc


class WarmQueue:
    """The queues of one key prefix. Every method raises ``UnavailableError`` when the
    queue Redis cannot serve it now (no answer, or a reply ``unavailable`` names).

    ``max_block_s`` caps a ``BLPOP``: it must stay below the client's socket timeout,
    or the read times out before Redis answers.
    """

    def __init__(self, client: Any, prefix: str, max_block_s: float = 1.0) -> None:
        self._client = client
        self._prefix = prefix
        self._max_block_s = max_block_s
        self._sha: str | None = None

    def tenants(self) -> list[str]:
        """Tenants whose queue may hold entries, sorted (callers rotate over them)."""
        try:
            members = self._client.smembers(tenants_key(self._prefix))
        except RedisError as exc:
            _raise("SMEMBERS", exc)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def pop(self, shares: Sequence[tuple[str, int]]) -> list[QueueEntry]:
        """Pop up to ``n`` entries of each ``(tenant, n)``, highest score first, in one
        pipelined round trip; entries come tenant by tenant, in the order given."""
        shares = [(tenant, n) for tenant, n in shares if n > 0]
        if not shares:
            return []
        try:
            replies = self._run_pops(shares)
        except RedisError as exc:
            self._sha = None
            _raise("POP", exc)
        out: list[QueueEntry] = []
        for (tenant, _n), flat in zip(shares, replies, strict=True):
            out.extend(parse_popped(tenant, flat))
        return out

    def wait(self, timeout_s: float) -> bool:
        """Block on the wake list for at most ``timeout_s``; True when a token came."""
        timeout = min(max(timeout_s, MIN_BLOCK_S), self._max_block_s)
        try:
            return self._client.blpop([wake_key(self._prefix)], timeout=timeout) is not None
        except RedisError as exc:
            _raise("BLPOP", exc)

    def _run_pops(self, shares: list[tuple[str, int]]) -> list[list[bytes | str]]:
        if self._sha is None:
            self._sha = str(self._client.script_load(POP))
        try:
            return self._pipeline(shares, self._sha)
        except NoScriptError:  # Redis restarted and lost its script cache
            self._sha = str(self._client.script_load(POP))
            return self._pipeline(shares, self._sha)

    def _pipeline(self, shares: list[tuple[str, int]], sha: str) -> list[list[bytes | str]]:
        pipe = self._client.pipeline(transaction=False)
        prefix, tenants = self._prefix, tenants_key(self._prefix)
        for tenant, n in shares:
            pipe.evalsha(sha, 3, queue_key(prefix, tenant), expiry_key(prefix, tenant),
                         tenants, n, tenant)
        return list(pipe.execute())

