"""One queue entry on its way to the cache, and the fetch threads that try it."""

from __future__ import annotations

import heapq
import itertools
import queue
import random
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from stream_warmer.backoff import jittered_s
from stream_warmer.load.cache import Cache
from stream_warmer.load.origin import Origin
from stream_warmer.load.outage import UnavailableError
from stream_warmer.serve.policy import TokenBucket
from stream_warmer.warmqueue import QueueEntry

Kind = Literal["loaded", "missing", "origin_error", "cache_down", "cache_error"]


@dataclass(slots=True)
class Job:
    """An entry held by the loader: popped at ``popped_at`` (monotonic seconds)."""

    entry: QueueEntry
    popped_at: float
    attempts: int = 0  # origin fetches tried
    value: bytes | None = None  # fetched but not written yet (the cache was down)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one try did; ``fetch_s`` is None when no origin fetch was made."""

    job: Job
    kind: Kind
    fetch_s: float | None
    done_at: float
    error: str = ""


def describe(exc: BaseException) -> str:
    """``Type: message`` of an error (redis-py's ``repr`` drops the message)."""
    return f"{type(exc).__name__}: {exc}"


def attempt(job: Job, origin: Origin, cache: Cache, clock: Callable[[], float]) -> Outcome:
    """Fetch the entry from the origin (unless fetched before), then write it to the cache.

    Runs on a fetch thread and never raises: every result is an ``Outcome``.
    """
    fetch_s = None
    if job.value is None:
        job.attempts += 1
        start = clock()
        try:
            value = origin(job.entry.tenant, job.entry.key)
        except Exception as exc:  # an origin error is a value, retried by the loop
            return Outcome(job, "origin_error", clock() - start, clock(), describe(exc))
        fetch_s = clock() - start
        if value is None:
            return Outcome(job, "missing", fetch_s, clock())
        if not isinstance(value, bytes | bytearray | memoryview):
            error = f"origin returned {type(value).__name__}, not bytes"
            return Outcome(job, "origin_error", fetch_s, clock(), error)
        job.value = bytes(value)
    try:
        cache.put(job.entry, job.value)
    except UnavailableError as exc:
        return Outcome(job, "cache_down", fetch_s, clock(), str(exc))
    except Exception as exc:  # a broken cache implementation: counted, never retried
        return Outcome(job, "cache_error", fetch_s, clock(), describe(exc))
    job.value = None
    return Outcome(job, "loaded", fetch_s, clock())


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """The wait before the next try after ``attempts`` failed ones: ``base_s`` doubled per
    failure after the first, capped at ``max_s``, jittered down by up to half (the
    outages' rule, ``backoff.jittered_s``)."""
    return jittered_s(attempts - 1, base_s, max_s, rng)


class RetryHeap:
    """Jobs waiting for their retry time, soonest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due: float, job: Job) -> None:
        """Retry ``job`` at ``due`` (monotonic seconds)."""
        heapq.heappush(self._heap, (due, next(self._seq), job))

    def next_due(self) -> float | None:
        """When the soonest retry is due, if any."""
        return self._heap[0][0] if self._heap else None

    def take_due(self, now: float) -> list[Job]:
        """Remove and return the jobs due by ``now``, soonest first."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def clear(self) -> list[Job]:
        """Remove and return every waiting job."""
        out = [job for _due, _seq, job in self._heap]
        self._heap.clear()
        return out


class Fetcher:
    """At most ``concurrency`` tries run at once on the fetch threads; origin fetches
    (not re-writes of a value already fetched) spend a token of a global rate limit.

    ``submit`` and ``finished`` are for the loop thread only; the threads hand their
    outcomes back through a queue and set an event the loop can wait on.
    """

    def __init__(self, origin: Origin, cache: Cache, concurrency: int, rate_per_s: float, *,
                 clock: Callable[[], float], executor: Executor | None = None) -> None:
        self._origin, self._cache, self._clock = origin, cache, clock
        self.concurrency = concurrency
        self.token_wait_s = 1.0 / rate_per_s
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(concurrency, "load")
        burst = max(1.0, min(rate_per_s, float(concurrency)))
        self._bucket = TokenBucket(rate_per_s, burst, clock())
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._wake = threading.Event()
        self.running = 0

    def submit(self, job: Job) -> bool:
        """Start one try of ``job``; False when no thread is free or no token is left."""
        if self.running >= self.concurrency:
            return False
        if job.value is None:
            if not self._bucket.available(self._clock()):
                return False
            self._bucket.take()
        self.running += 1
        future = self._executor.submit(attempt, job, self._origin, self._cache, self._clock)
        future.add_done_callback(lambda f: self._finished(job, f))
        return True

    def finished(self) -> list[Outcome]:
        """The outcomes handed back since the last call."""
        self._wake.clear()  # before draining: a later outcome sets it again
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.running -= len(out)
        return out

    def wait(self, timeout_s: float) -> None:
        """Block until an outcome comes back (or ``wake``), at most ``timeout_s``."""
        self._wake.wait(max(0.0, timeout_s))

    def wake(self) -> None:
        """Cut a ``wait`` short."""
        self._wake.set()

    def close(self) -> None:
        """Shut the threads down (if this fetcher made them), waiting for them."""
        if self._own_executor:
            self._executor.shutdown(wait=True)

    def _finished(self, job: Job, future: Future[Outcome]) -> None:
        exc = future.exception()  # attempt() returns values; this is a safety net
        outcome = (future.result() if exc is None
                   else Outcome(job, "cache_error", None, self._clock(), describe(exc)))
        self._done.put(outcome)
        self._wake.set()
