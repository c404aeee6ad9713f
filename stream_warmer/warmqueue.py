"""The per-tenant warm queues in Redis: one layout, written by serve, drained by loaders.

Keys (``prefix`` from settings; a tenant matches the contract's pattern, so it never
contains ``:`` and no tenant can reach another tenant's keys, nor the two-part
``{prefix}:queues``, ``{prefix}:wake`` and ``{prefix}:probe``):

- ``{prefix}:{tenant}:queue``       sorted set, member = key, score = confidence;
  drained highest first; trimmed to ``queue_max_len`` by dropping the lowest scores;
- ``{prefix}:{tenant}:expires``     hash, key -> ``expires_at`` (epoch ms) of the
  newest command queued for that key; a loader drops an entry past its expiry.
  Both keys expire (``PEXPIRE``, only ever extended, on each enqueue) once the
  newest entry's lifetime (``expires_at - issued_at``) plus ``QUEUE_GRACE_MS`` has
  passed: by then every entry is useless, so an idle tenant's keys go away;
- ``{prefix}:{tenant}:warm:{key}``  burst-filter marker holding the command JSON,
  set with ``NX PX dedup_ttl``: while it lives the same key is not queued again by
  any replica (short by default: whether the cache already holds a key is the
  loader's check, not this marker's). The exception is a re-handled cause: a
  command whose ``source`` is in the marker's partition and not after the marker's
  offset comes from events read again (a crash or a Redis outage between the write
  and the command's delivery to ``warm-commands``), so it is queued again and
  reported written, to be produced again (at-least-once);
- ``{prefix}:queues``               set of tenants whose queue may be non-empty, so
  loaders find work without scanning the key space; a tenant whose queue expired
  stays in it until a loader's ``POP`` finds the queue empty and removes it;
- ``{prefix}:wake``                 list of at most ``WAKE_TOKENS`` tokens pushed by each
  enqueue: an idle loader blocks on it (``BLPOP``) instead of polling;
- ``{prefix}:probe``                a string set for a second by serve's health probe
  (``PROBE``): a scripted write like ``ENQUEUE``, so a replica (``READONLY``), a
  full Redis (``OOM``) or a busy one fails it where a ``PING`` would answer.

Both sides run a small Lua script, so each change is atomic per tenant. Both treat
the same replies as "Redis cannot take this now, retry later"
(``stream_warmer.redisfaults.unavailable``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


def queue_key(prefix: str, tenant: str) -> str:
    """The tenant's priority queue."""
    return f"{prefix}:{tenant}:queue"


def expiry_key(prefix: str, tenant: str) -> str:
    """The tenant's hash of queue entries' expiry times."""
    return f"{prefix}:{tenant}:expires"


def marker_key(prefix: str, tenant: str, key: str) -> str:
    """The burst-filter marker of one (tenant, key)."""
    return f"{prefix}:{tenant}:warm:{key}"


def tenants_key(prefix: str) -> str:
    """The set of tenants with queued work."""
    return f"{prefix}:queues"


def wake_key(prefix: str) -> str:
    """The list idle loaders block on."""
    return f"{prefix}:wake"


def probe_key(prefix: str) -> str:
    """The key serve's health probe writes."""
    return f"{prefix}:probe"


WAKE_TOKENS = 16
# a tenant's queue keys outlive their newest entry's expiry by this much (a loader
# whose clock is a little behind serve's still finds the entry; it then drops it)
QUEUE_GRACE_MS = 1_000
# the longest life a queue key is given (a command TTL of years would overflow PEXPIRE)
QUEUE_MAX_LIFE_MS = 30 * 24 * 3600 * 1000
# ENQUEUE's flags, one per command
SUPPRESSED, QUEUED, REQUEUED = 0, 1, 2


# KEYS = [queue, expires, tenants, wake, marker_1..marker_n]
# ARGV = [dedup_ttl_ms, max_len, tenant, life_ms, score_1, key_1, expires_1, json_1,
#         source_1, ...]
# returns one flag per command: QUEUED (a new marker), REQUEUED (a re-handled cause,
# see the module docstring) or SUPPRESSED (a live marker of another cause)
ENQUEUE = f"""
local SUPPRESSED, QUEUED, REQUEUED = {SUPPRESSED}, {QUEUED}, {REQUEUED}
local ttl, maxlen, life, out, added = ARGV[1], tonumber(ARGV[2]), ARGV[4], {{}}, 0
local function rehandled(marker, source)
  local ok, old = pcall(cjson.decode, redis.call('GET', marker))
  if not ok or type(old) ~= 'table' or type(old.source) ~= 'string' then
    return false
  end
  local part, offset = string.match(source, '^(.+)/(%d+)$')
  local old_part, old_offset = string.match(old.source, '^(.+)/(%d+)$')
  if part == nil or part ~= old_part then
    return false
  end
  if #offset ~= #old_offset then  -- digit strings: exact beyond 2^53
    return #offset < #old_offset
  end
  return offset <= old_offset
end
for i = 5, #KEYS do
  local j = 5 + (i - 5) * 5
  local flag = SUPPRESSED
  if redis.call('SET', KEYS[i], ARGV[j + 3], 'NX', 'PX', ttl) then
    flag = QUEUED
  elseif rehandled(KEYS[i], ARGV[j + 4]) then
    redis.call('SET', KEYS[i], ARGV[j + 3], 'PX', ttl)
    flag = REQUEUED
  end
  if flag ~= SUPPRESSED then
    redis.call('ZADD', KEYS[1], ARGV[j], ARGV[j + 1])
    redis.call('HSET', KEYS[2], ARGV[j + 1], ARGV[j + 2])
    added = added + 1
  end
  out[i - 4] = flag
end
if added > 0 then
  local size = redis.call('ZCARD', KEYS[1])
  if size > maxlen then
    local gone = redis.call('ZRANGE', KEYS[1], 0, size - maxlen - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - maxlen - 1)
    redis.call('HDEL', KEYS[2], unpack(gone))
  end
  for k = 1, 2 do  -- extend only: an older entry may carry a longer life
    if redis.call('PTTL', KEYS[k]) < tonumber(life) then
      redis.call('PEXPIRE', KEYS[k], life)
    end
  end
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('LPUSH', KEYS[4], 1)
  redis.call('LTRIM', KEYS[4], 0, {WAKE_TOKENS - 1})
end
return out
"""

# KEYS = [queue, expires, tenants]; ARGV = [count, tenant]
# returns a flat list [key_1, score_1, expires_1, ...], highest score first; the
# tenant leaves the tenants set once its queue is empty - or gone: an expired queue
# pops nothing, so the first loader to visit it removes the tenant
POP = """
local popped = redis.call('ZPOPMAX', KEYS[1], ARGV[1])
local out = {}
for i = 1, #popped, 2 do
  local key = popped[i]
  out[#out + 1] = key
  out[#out + 1] = popped[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], key) or '0'
  redis.call('HDEL', KEYS[2], key)
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
  redis.call('DEL', KEYS[2])
end
return out
"""

# KEYS = [probe]; ARGV = [ttl_ms]: serve's health probe, a write like ENQUEUE's
PROBE = "return redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])"


def queue_life_ms(lifetimes_ms: Iterable[int]) -> int:
    """How long a tenant's queue keys live after an enqueue of commands whose lifetimes
    (``expires_at - issued_at``, ms) are ``lifetimes_ms``."""
    longest = max((max(0, life) for life in lifetimes_ms), default=0)
    return min(longest + QUEUE_GRACE_MS, QUEUE_MAX_LIFE_MS)


class QueueEntry(NamedTuple):
    """One key popped from a tenant's queue."""

    tenant: str
    key: str
    score: float
    expires_at: int  # epoch ms; 0 when unknown (never expires)


def parse_popped(tenant: str, flat: list[bytes | str]) -> list[QueueEntry]:
    """The entries of one ``POP`` reply, highest score first."""
    out = []
    for i in range(0, len(flat), 3):
        key, score, expires = flat[i], flat[i + 1], flat[i + 2]
        out.append(QueueEntry(
            tenant,
            key.decode() if isinstance(key, bytes) else key,
            float(score),
            int(expires),
        ))
    return out
