"""A Redis the loader needs does not answer: pause, back off, retry, log once per outage.

The waits are serve's (``stream_warmer.backoff.Backoff``): doubled per failed probe up
to ``backoff_max_s``, jittered, and an outage right after a recovery goes on backing
off instead of starting over.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from stream_warmer.backoff import Backoff
from stream_warmer.errors import StreamWarmerError

log = logging.getLogger(__name__)


class UnavailableError(StreamWarmerError):
    """The queue or cache Redis cannot serve a request now (no answer, or a reply
    ``redisfaults.unavailable`` names: a failover, OOM, a busy script, loading)."""


class Outage:
    """The unavailability of one backend (``queue`` or ``cache``) and when to try it again.

    ``fail`` while an outage is on only counts when it ends a probe (the retry time has
    come); failures of work started before the outage do not push the retry further.
    ``rng`` (the jitter) is injected for tests.
    """

    def __init__(self, name: str, clock: Callable[[], float], backoff_max_s: float,
                 on_change: Callable[[bool], None] | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self._clock = clock
        self._backoff = Backoff(backoff_max_s, rng=rng)
        self._on_change = on_change
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
            self.active, self._since = True, now
            wait = self._backoff.start(now)
            log.warning("redis unavailable: loader paused", extra={
                "redis": self.name, "error": error})
            if self._on_change is not None:
                self._on_change(False)
        elif now >= self.retry_at:
            wait = self._backoff.again()
        else:
            return
        self.retry_at = now + wait

    def ok(self) -> None:
        """The backend answered: end the outage, if any (logged)."""
        if not self.active:
            return
        self.active = False
        now = self._clock()
        self._backoff.recovered(now)
        log.info("redis back: loader resumed", extra={
            "redis": self.name, "outage_s": round(now - self._since, 3)})
        if self._on_change is not None:
            self._on_change(True)
