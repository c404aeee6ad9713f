"""Jittered exponential backoff: how long to wait before trying a failed backend again.

One rule for serve's Redis outage (``serve.outage``), the loader's queue and cache
outages (``load.outage``) and its origin retries (``load.jobs``): the first wait
doubled per failure, capped, then drawn uniformly between half and all of that, so
processes that failed together (replicas paused by one outage) do not retry in step.
The random source is injected, so tests see the same waits for the same seed.
"""

from __future__ import annotations

import random

FIRST_BACKOFF_S = 0.1
_MAX_DOUBLINGS = 64  # far past any cap; keeps 2 ** n finite however many failures


def jittered_s(failures: int, first_s: float, max_s: float, rng: random.Random) -> float:
    """The wait after ``failures`` failed retries (0: the first wait): ``first_s``
    doubled per failure, capped at ``max_s``, jittered down by up to half."""
    full = min(max_s, first_s * 2.0 ** min(max(0, failures), _MAX_DOUBLINGS))
    return full * rng.uniform(0.5, 1.0)


class Backoff:
    """The waits of one backend's outages.

    ``start`` begins an outage, ``again`` follows a failed retry, ``recovered`` ends
    it. An outage that starts within ``max_s`` of the last recovery (a backend that
    answers the probe but fails the work) goes on from the last wait instead of
    starting over, so a flapping backend is not hammered at the first wait.
    """

    def __init__(self, max_s: float, *, first_s: float = FIRST_BACKOFF_S,
                 rng: random.Random | None = None) -> None:
        self.first_s = first_s
        self.max_s = max(first_s, max_s)
        self._rng = rng or random.Random()
        self._failures = 0  # failed retries (and flaps) since the backoff last started over
        self._recovered_at: float | None = None

    def start(self, now: float) -> float:
        """An outage begins at ``now``: the wait before its first retry."""
        flapping = self._recovered_at is not None and now - self._recovered_at < self.max_s
        self._failures = self._failures + 1 if flapping else 0
        return self.wait_s(self._failures)

    def again(self) -> float:
        """A retry failed: the (doubled) wait before the next."""
        self._failures += 1
        return self.wait_s(self._failures)

    def recovered(self, now: float) -> None:
        """The backend answered again at ``now``."""
        self._recovered_at = now

    def wait_s(self, failures: int) -> float:
        """One wait after ``failures`` failed retries (see ``jittered_s``)."""
        return jittered_s(failures, self.first_s, self.max_s, self._rng)
