"""A Redis the loader needs does not answer: pause, back off, retry, log once per outage."""

from __future__ import annotations

import logging
from collections.abc import Callable

from stream_warmer.errors import StreamWarmerError

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 0.1


class UnavailableError(StreamWarmerError):
    """The queue or cache Redis did not answer (connection refused, reset or timed out)."""


class Outage:
    """The unavailability of one backend (``queue`` or ``cache``) and when to try it again.

    ``fail`` while an outage is on only counts when it ends a probe (the retry time has
    come); failures of work started before the outage do not push the retry further.
    """

    def __init__(self, name: str, clock: Callable[[], float], backoff_max_s: float,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.name = name
        self._clock = clock
        self._backoff_max_s = max(FIRST_BACKOFF_S, backoff_max_s)
        self._on_change = on_change
        self._backoff_s = FIRST_BACKOFF_S
        self._since = 0.0
        self.retry_at = 0.0
        self.active = False

    def due(self) -> bool:
        """True when the backend may be used now: no outage, or its retry time has come."""
        return not self.active or self._clock() >= self.retry_at

    def wait_s(self) -> float:
        """Seconds until the next retry (0 when there is no outage)."""
        return max(0.0, self.retry_at - self._clock()) if self.active else 0.0

    def fail(self, error: str) -> None:
        """The backend failed: start an outage (logged), or back off further after a probe."""
        now = self._clock()
        if not self.active:
            self.active, self._since, self._backoff_s = True, now, FIRST_BACKOFF_S
            log.warning("redis unavailable: loader paused", extra={
                "redis": self.name, "error": error})
            if self._on_change is not None:
                self._on_change(False)
        elif now >= self.retry_at:
            self._backoff_s = min(self._backoff_s * 2, self._backoff_max_s)
        else:
            return
        self.retry_at = now + self._backoff_s

    def ok(self) -> None:
        """The backend answered: end the outage, if any (logged)."""
        if not self.active:
            return
        self.active = False
        log.info("redis back: loader resumed", extra={
            "redis": self.name, "outage_s": round(self._clock() - self._since, 3)})
        if self._on_change is not None:
            self._on_change(True)
