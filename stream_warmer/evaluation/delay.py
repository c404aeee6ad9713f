"""Delays of the delay-aware warm-eval (DESIGN §8): a latency in ms as requests.

``warmeval`` applies a warm named after request i only after request i + L; a
benchmark that measures an event->warm latency at a replay rate turns it into that L
with ``delay_requests``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from stream_warmer.errors import ConfigError


def delay_requests(latency_ms: float, rate: float) -> int:
    """A latency in ms as a delay in requests at ``rate`` events/s: ceil(ms x rate / 1000).

    The product is rounded to 9 decimals first, so that e.g. 10 ms at 2,000 events/s is
    20 requests even where the float arithmetic lands a hair above a whole number.
    """
    if not latency_ms >= 0 or not rate > 0 or math.isinf(latency_ms * rate):
        msg = f"a delay needs latency_ms >= 0 and rate > 0, got {latency_ms!r} ms at {rate!r}/s"
        raise ConfigError(msg)
    return math.ceil(round(latency_ms * rate / 1000, 9))


def check_delays(delays: Iterable[int]) -> None:
    """Raise ``ConfigError`` unless every delay is a whole number of requests >= 0."""
    bad = [d for d in delays if isinstance(d, bool) or not isinstance(d, int) or d < 0]
    if bad:
        msg = f"delays must be whole numbers of requests >= 0, got {bad}"
        raise ConfigError(msg)
