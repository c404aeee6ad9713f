"""Which Redis errors mean "not now" (an outage, waited out) and which mean "wrong" (a bug).

One rule for every Redis the project writes to: serve's warm queues
(``serve.sinks``), and the loader's queue and cache (``load.queue``, ``load.cache``).
An outage pauses the caller, who backs off (``stream_warmer.backoff``) and retries;
any other error reply raises.
"""

from __future__ import annotations

import redis
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError

# replies that say "not now" rather than "wrong": a failover (READONLY from a replica,
# MASTERDOWN, NOREPLICAS), a full Redis (OOM), a script running past its time limit
# (BUSY, a plain ResponseError in redis-py), a restart loading its data set (LOADING,
# a ConnectionError). Waited out like a connection error; any other ResponseError
# (WRONGTYPE, a script bug) is a bug and raises.
_UNAVAILABLE_TYPES = (redis.ConnectionError, redis.TimeoutError, ReadOnlyError,
                      OutOfMemoryError, MasterDownError)
_UNAVAILABLE_CODES = frozenset({"BUSY", "NOREPLICAS", "READONLY", "OOM", "LOADING",
                                "MASTERDOWN"})
# redis-py prefixes a pipeline's error with the failed command (keys and all), then this
_PIPELINE_NOTE = " of pipeline caused error: "


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (from redis-py) means Redis cannot serve the request right now."""
    if isinstance(exc, _UNAVAILABLE_TYPES):
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    code = getattr(exc, "status_code", None)  # set by newer redis-py for mapped codes
    if code is None:  # an error code redis-py does not map: the reply's first word
        text = str(exc.args[0]) if exc.args else ""
        code = text.rpartition(_PIPELINE_NOTE)[2].split(" ", 1)[0]
    return code in _UNAVAILABLE_CODES
