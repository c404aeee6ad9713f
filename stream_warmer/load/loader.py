"""The loader loop: pop fairly, drop stale, skip present, fetch with bounded concurrency.

One round (``step``), in this order:

1. collect the fetches that finished: count them, schedule retries of failed ones;
2. move the retries that are due to the front of the ready line;
3. pop up to the free capacity, spread round robin over the tenants with queued work
   (at most ``batch_per_tenant`` each, highest score first), in one round trip;
4. drop entries past their ``expires_at``; skip those the cache already holds (one
   presence round trip per batch); the rest join the ready line;
5. start ready fetches while a fetch thread is free and the rate limit allows.

Bounds: at most ``concurrency`` fetches run; nothing is popped beyond the threads
that are free, and at most ``2 x concurrency`` entries are held in all (the retries
of a failing origin wait without taking a fetch thread). When nothing can be popped
the loop blocks on the wake list (new work) or until a fetch finishes. A Redis that
does not answer pauses the loop (backoff, logged once per outage), never ends it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from stream_warmer.load.cache import Cache
from stream_warmer.load.jobs import Fetcher, Job, Outcome
from stream_warmer.load.metrics import LoaderMetrics, LoaderStats
from stream_warmer.load.origin import Origin
from stream_warmer.load.outage import Outage, UnavailableError
from stream_warmer.load.queue import WarmQueue, fair_shares
from stream_warmer.load.retries import Retries
from stream_warmer.settings import LoaderSettings
from stream_warmer.warmqueue import QueueEntry

log = logging.getLogger(__name__)
# blocked on the wake list, the loop does not see fetches finish: while some run, block
# only this long, so their outcomes (retries, counts) are handled soon
_BUSY_BLOCK_S = 0.01


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Loader:
    """Drains the warm queues of one key prefix into ``cache``, fetching from ``origin``.

    Drive it with ``run(stop)`` (blocks until ``stop`` is set, then drains), or call
    ``step()`` yourself and ``drain()`` at the end. ``clock`` (monotonic seconds) and
    ``wall_ms`` (epoch ms, compared with ``expires_at``) are injected for tests, as
    are ``rng`` (retry jitter) and ``executor`` (the fetch threads; by default a pool
    of ``concurrency`` threads that ``close`` shuts down). ``max_block_s`` caps a
    ``BLPOP`` on the wake list: keep it below the queue client's socket timeout.
    """

    def __init__(
        self,
        queue_client: Any,
        settings: LoaderSettings,
        prefix: str,
        cache: Cache,
        origin: Origin,
        *,
        metrics: LoaderMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
        rng: random.Random | None = None,
        executor: Executor | None = None,
        max_block_s: float = 1.0,
        backoff_max_s: float = 10.0,
    ) -> None:
        s = self._s = settings
        self._queue = WarmQueue(queue_client, prefix, max_block_s)
        self._cache = cache
        self.metrics = metrics or LoaderMetrics()
        self.stats = LoaderStats()
        self._clock, self._wall_ms = clock, wall_ms
        self._rng = rng or random.Random()
        self._fetcher = Fetcher(origin, cache, s.concurrency, s.rate_per_s, clock=clock,
                                executor=executor)
        self._queue_outage, self._cache_outage = (
            Outage(name, clock, backoff_max_s, self._redis_up(name), rng=self._rng)
            for name in ("queue", "cache"))
        self._ready: deque[Job] = deque()  # admitted, waiting for a thread or a token
        self._unchecked: list[Job] = []  # popped while the cache was down: presence unknown
        self._retries = Retries(s, clock, self._rng)
        self._rotation = 0
        self._pop_limit: int | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event, max_entries: int | None = None,
            idle_timeout_s: float | None = None) -> LoaderStats:
        """Load until ``stop`` is set (or ``max_entries`` popped, or ``idle_timeout_s``
        with nothing popped nor held), then ``drain``."""
        self._pop_limit = max_entries
        idle_since = self._clock()
        while not stop.is_set():
            if self.step():
                idle_since = self._clock()
            elif self._bounded_run_over(max_entries, idle_timeout_s, idle_since):
                break
            else:
                self._wait()
        self.drain()
        return self.stats

    def _bounded_run_over(self, max_entries: int | None, idle_timeout_s: float | None,
                          idle_since: float) -> bool:
        if max_entries is not None and self.stats.popped >= max_entries:
            return True
        return (idle_timeout_s is not None and not self.held()
                and self._clock() - idle_since >= idle_timeout_s)

    def step(self) -> int:
        """One round (see the module docstring); returns how many entries it popped."""
        self._collect()
        self._ready.extendleft(reversed(self._retries.take_due(self._clock())))
        popped = self._pop()
        self._admit(popped)
        self._start_fetches()
        self._publish()
        return len(popped)

    def drain(self) -> None:
        """Stop popping and finish what is held: start the admitted fetches (rate limit
        kept), wait for every running one and its write. Entries waiting for a retry
        or for the cache to answer are abandoned (counted)."""
        self._stopping = True
        self._collect()
        self._count("abandoned", len(self._retries.clear()) + len(self._unchecked))
        self._unchecked = []
        fetcher = self._fetcher
        while self._ready or fetcher.running:
            self._start_fetches()
            self._publish()
            token_wanted = self._ready and fetcher.running < fetcher.concurrency
            fetcher.wait(fetcher.token_wait_s if token_wanted else self._s.idle_wait_s)
            self._collect()
        self._publish()

    def wake(self) -> None:
        """Cut short a wait for a finished fetch (e.g. from a signal handler)."""
        self._fetcher.wake()

    def healthy(self) -> bool:
        """For ``/healthz``: not stopping, and both Redis answer."""
        return not (self._stopping or self._queue_outage.active or self._cache_outage.active)

    def held(self) -> int:
        """Entries popped and not finished: running, ready, unchecked or awaiting a retry."""
        return self._fetcher.running + len(self._ready) + len(self._unchecked) + len(self._retries)

    def close(self) -> None:
        """Shut the fetch threads down (if the loader made them), waiting for them."""
        self._fetcher.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one round
    def _pop(self) -> list[Job]:
        budget = self._pop_budget()
        # a cache outage due for a retry pops too: the batch's presence check is the probe
        if budget <= 0 or not self._queue_outage.due() or not self._cache_outage.due():
            return []
        try:
            tenants = self._queue.tenants()
            shares = fair_shares(tenants, budget, self._s.batch_per_tenant, self._rotation)
            entries = self._queue.pop(shares)
        except UnavailableError as exc:
            self._queue_outage.fail(str(exc))
            return []
        self._queue_outage.ok()
        self._rotation += len(shares)
        self._count("popped", len(entries))
        now = self._clock()
        return [Job(entry, now) for entry in entries]

    def _pop_budget(self) -> int:
        c = self._s.concurrency
        waiting = len(self._ready) + len(self._unchecked)
        budget = min(c - self._fetcher.running - waiting, 2 * c - self.held())
        if self._pop_limit is not None:
            budget = min(budget, self._pop_limit - self.stats.popped)
        return max(0, budget)

    def _admit(self, popped: list[Job]) -> None:
        jobs = [job for job in self._unchecked + popped if not self._expired(job.entry)]
        self._unchecked = []
        if not jobs:
            return
        if not self._cache_outage.due():
            self._unchecked = jobs
            return
        try:
            flags = self._cache.present([job.entry for job in jobs])
        except UnavailableError as exc:
            self._cache_outage.fail(str(exc))
            self._unchecked = jobs
            return
        self._cache_outage.ok()
        for job, present in zip(jobs, flags, strict=True):
            if present:
                self._count("skipped_present")
            else:
                self._ready.append(job)

    def _expired(self, entry: QueueEntry) -> bool:
        if 0 < entry.expires_at <= self._wall_ms():
            self._count("dropped_expired")
            return True
        return False

    def _start_fetches(self) -> None:
        if self._cache_outage.active and not self._cache_outage.due() and not self._stopping:
            return
        while self._ready:
            job = self._ready[0]
            if not (self._expired(job.entry) or self._fetcher.submit(job)):
                return  # no thread free, or no token left
            self._ready.popleft()

    # ------------------------------------------------------------------ outcomes
    def _collect(self) -> None:
        for outcome in self._fetcher.finished():
            self._settle(outcome)

    def _settle(self, out: Outcome) -> None:
        if out.fetch_s is not None:
            self.metrics.origin_seconds.observe(out.fetch_s)
        if out.kind == "loaded":
            self._count("loaded")
            self.metrics.pop_to_cache.observe(out.done_at - out.job.popped_at)
            self._cache_outage.ok()
        elif out.kind == "missing":
            self._count("origin_missing")
        elif out.kind == "origin_error":
            self._count("origin_errors")
            given_up = self._retries.retry_or_give_up(out, self._stopping)
            if given_up is not None:
                self._count(given_up)
            if given_up == "failed":
                self._retries.log_failed(out, self.stats.failed)
        elif out.kind == "cache_down":
            self._cache_outage.fail(out.error)
            if self._stopping:
                self._count("abandoned")
            else:  # the value is kept: written again once the cache answers
                self._ready.appendleft(out.job)
        else:
            self._count("cache_errors")
            log.error("cache write failed", extra={"tenant": out.job.entry.tenant,
                                                   "error": out.error})

    # ------------------------------------------------------------------ waiting
    def _wait(self) -> None:
        """Nothing popped: block on the wake list if more could be popped, else until a
        fetch finishes, a retry or a token is due, or a Redis may be tried again."""
        s, now = self._s, self._clock()
        timeout = s.idle_wait_s
        due = self._retries.next_due()
        if due is not None:
            timeout = min(timeout, due - now)
        for outage in (self._queue_outage, self._cache_outage):
            if outage.active:
                timeout = min(timeout, outage.wait_s())
        if self._ready and self._fetcher.running < s.concurrency:
            timeout = min(timeout, self._fetcher.token_wait_s)
        if timeout <= 0:
            return
        if self._ready or self._unchecked or not self.healthy() or self._pop_budget() <= 0:
            self._fetcher.wait(timeout)
            return
        if self._fetcher.running:
            timeout = min(timeout, _BUSY_BLOCK_S)
        try:
            self._queue.wait(timeout)
        except UnavailableError as exc:
            self._queue_outage.fail(str(exc))

    def _count(self, name: str, n: int = 1) -> None:
        if n:
            setattr(self.stats, name, getattr(self.stats, name) + n)
            self.metrics.counters[name].inc(n)

    def _publish(self) -> None:
        self.metrics.in_flight.set(self._fetcher.running)
        self.metrics.held.set(self.held())

    def _redis_up(self, name: str) -> Callable[[bool], None]:
        gauge = self.metrics.redis_up.labels(name)
        return lambda up: gauge.set(1 if up else 0)
