"""An origin for the loader integration tests, imported by ``stream-warmer load`` subprocesses
(``STREAM_WARMER_LOADER__ORIGIN=tests.integration.loader_origin:fetch``, PYTHONPATH = repo).

What a key does depends on its prefix:

- ``fail-``    always raises;
- ``flaky-``   raises on its first two calls (in this process), then succeeds;
- ``missing-`` returns None (the origin has no such key);
- ``slow-``    sleeps ``LOADER_TEST_SLOW_S`` seconds (default 0.3) first;
- anything else returns at once.

A value is ``b"v:<tenant>/<key>"``. Every call appends a ``start`` and an ``end`` JSON
line (time, tenant, key, calls running now) to the file ``LOADER_TEST_LOG``, if set.
"""

from __future__ import annotations

import json
import os
import threading
import time

_LOCK = threading.Lock()
_CALLS: dict[str, int] = {}
_ACTIVE = [0]  # calls running now


def _log(event: str, tenant: str, key: str, active: int) -> None:
    path = os.environ.get("LOADER_TEST_LOG")
    if not path:
        return
    line = json.dumps({"ev": event, "t": time.time(), "tenant": tenant, "key": key,
                       "active": active, "pid": os.getpid()})
    with _LOCK, open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def fetch(tenant: str, key: str) -> bytes | None:
    """The test origin (see the module docstring)."""
    with _LOCK:
        _ACTIVE[0] += 1
        active = _ACTIVE[0]
        _CALLS[key] = calls = _CALLS.get(key, 0) + 1
    _log("start", tenant, key, active)
    try:
        if key.startswith("slow-"):
            time.sleep(float(os.environ.get("LOADER_TEST_SLOW_S", "0.3")))
        if key.startswith("fail-") or (key.startswith("flaky-") and calls <= 2):
            msg = f"origin refuses {key} (call {calls})"
            raise RuntimeError(msg)
        return None if key.startswith("missing-") else f"v:{tenant}/{key}".encode()
    finally:
        with _LOCK:
            _ACTIVE[0] -= 1
        _log("end", tenant, key, active)
