"""The per-tenant warm queues in Redis: one layout, written by serve, drained by loaders.

Keys (``prefix`` from settings; a tenant matches the contract's pattern, so it never
contains ``:`` and no tenant can reach another tenant's keys, nor the two-part
``{prefix}:queues``):

- ``{prefix}:{tenant}:queue``       sorted set, member = key, score = confidence;
  drained highest first; trimmed to ``queue_max_len`` by dropping the lowest scores;
- ``{prefix}:{tenant}:expires``     hash, key -> ``expires_at`` (epoch ms) of the
  newest command queued for that key; a loader drops an entry past its expiry;
- ``{prefix}:{tenant}:warm:{key}``  burst-filter marker holding the command JSON,
  set with ``NX PX dedup_ttl``: while it lives the same key is not queued again by
  any replica (short by default: whether the cache already holds a key is the
  loader's check, not this marker's);
- ``{prefix}:queues``               set of tenants whose queue may be non-empty, so
  loaders find work without scanning the key space;
- ``{prefix}:wake``                 list of at most ``WAKE_TOKENS`` tokens pushed by each
  enqueue: an idle loader blocks on it (``BLPOP``) instead of polling.

Both sides run a small Lua script, so each change is atomic per tenant.
"""

from __future__ import annotations

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


WAKE_TOKENS = 16


# KEYS = [queue, expires, tenants, wake, marker_1..marker_n]
# ARGV = [ttl_ms, max_len, tenant, score_1, key_1, expires_1, json_1, ...]
# returns one flag per command: 1 = queued, 0 = suppressed by a live marker
ENQUEUE = """
local ttl, maxlen, out, added = ARGV[1], tonumber(ARGV[2]), {}, 0
for i = 5, #KEYS do
  local j = 4 + (i - 5) * 4
  if redis.call('SET', KEYS[i], ARGV[j + 3], 'NX', 'PX', ttl) then
    redis.call('ZADD', KEYS[1], ARGV[j], ARGV[j + 1])
    redis.call('HSET', KEYS[2], ARGV[j + 1], ARGV[j + 2])
    out[i - 4] = 1
    added = added + 1
  else
    out[i - 4] = 0
  end
end
if added > 0 then
  local size = redis.call('ZCARD', KEYS[1])
  if size > maxlen then
    local gone = redis.call('ZRANGE', KEYS[1], 0, size - maxlen - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - maxlen - 1)
    redis.call('HDEL', KEYS[2], unpack(gone))
  end
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('LPUSH', KEYS[4], 1)
  redis.call('LTRIM', KEYS[4], 0, WAKE_TOKENS - 1)
end
return out
""".replace("WAKE_TOKENS", str(WAKE_TOKENS))

# KEYS = [queue, expires, tenants]; ARGV = [count, tenant]
# returns a flat list [key_1, score_1, expires_1, ...], highest score first; the
# tenant leaves the tenants set once its queue is empty
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
