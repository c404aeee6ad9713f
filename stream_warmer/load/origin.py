"""Where the loader gets values: a function ``origin(tenant, key) -> bytes | None``.

``loader.origin`` names it: ``simulated`` (built in, for demos and benchmarks) or
``module:function`` (``module:Class.method`` works too), imported once at start. The
function is called from the loader's fetch threads, so it must be thread-safe. It
returns the value to cache, or ``None`` when the origin has no such key (not
retried); an exception is a failed attempt (retried with backoff).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import cast

from stream_warmer.errors import ConfigError
from stream_warmer.settings import LoaderSettings

Origin = Callable[[str, str], bytes | None]
_VAR = "STREAM_WARMER_LOADER__ORIGIN (loader.origin)"


class SimulatedOrigin:
    """Sleeps ``latency_ms`` per fetch, then returns ``payload_bytes`` bytes."""

    def __init__(self, latency_ms: float, payload_bytes: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._latency_s = latency_ms / 1000.0
        self._payload = b"x" * payload_bytes
        self._sleep = sleep

    def __call__(self, tenant: str, key: str) -> bytes:
        if self._latency_s > 0:
            self._sleep(self._latency_s)
        return self._payload


def resolve_origin(settings: LoaderSettings) -> Origin:
    """The origin ``settings.origin`` names; ``ConfigError`` when it cannot be had."""
    spec = settings.origin.strip()
    if spec == "simulated":
        return SimulatedOrigin(settings.origin_latency_ms, settings.origin_payload_bytes)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        msg = f"{_VAR}: expected 'simulated' or 'module:function'; got {spec!r}"
        raise ConfigError(msg)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raised at import
        msg = f"{_VAR}: cannot import module {module_name!r}: {exc!r}"
        raise ConfigError(msg) from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            msg = f"{_VAR}: {spec!r}: module {module_name!r} has no attribute {attr!r}"
            raise ConfigError(msg) from exc
    if not callable(target):
        msg = f"{_VAR}: {spec!r} is a {type(target).__name__}, not a callable"
        raise ConfigError(msg)
    return cast(Origin, target)
