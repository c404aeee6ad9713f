"""The loader's rule for a failed origin fetch: another try after a jittered backoff
while attempts are left, else the entry is given up (``failed``; ``abandoned`` when
the loader is stopping). A broken origin fails every entry, so final failures are
logged as a summary at most every ``_FAIL_LOG_EVERY_S``, not one line each."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from stream_warmer.load.jobs import Outcome, RetryHeap, backoff_s
from stream_warmer.settings import LoaderSettings

log = logging.getLogger(__name__)
_FAIL_LOG_EVERY_S = 5.0  # a broken origin fails every entry: log a summary, not each one


class Retries(RetryHeap):
    """The jobs waiting for their retry time (soonest first), and the rule that puts a
    failed one there or gives it up."""

    def __init__(self, settings: LoaderSettings, clock: Callable[[], float],
                 rng: random.Random) -> None:
        super().__init__()
        self._s, self._clock, self._rng = settings, clock, rng
        self._fail_logged_at = -_FAIL_LOG_EVERY_S

    def retry_or_give_up(self, out: Outcome, stopping: bool) -> str | None:
        """Schedule another try of ``out``'s job (``None``), or name the counter of a job
        given up: ``failed`` after its last attempt, else ``abandoned`` (stopping)."""
        job, s = out.job, self._s
        log.debug("origin fetch failed", extra={"tenant": job.entry.tenant, "key": job.entry.key,
                                                "attempts": job.attempts, "error": out.error})
        if job.attempts < s.max_attempts and not stopping:
            wait = backoff_s(job.attempts, s.retry_backoff_s, s.retry_backoff_max_s, self._rng)
            self.add(self._clock() + wait, job)
            return None
        return "failed" if job.attempts >= s.max_attempts else "abandoned"

    def log_failed(self, out: Outcome, failed_total: int) -> None:
        """Log a job whose last attempt failed, unless one was logged less than
        ``_FAIL_LOG_EVERY_S`` ago."""
        job, now = out.job, self._clock()
        if now - self._fail_logged_at >= _FAIL_LOG_EVERY_S:
            self._fail_logged_at = now
            log.warning("origin fetch failed after its last attempt", extra={
                "tenant": job.entry.tenant, "key": job.entry.key, "attempts": job.attempts,
                "error": out.error, "failed_total": failed_total})
