"""The application side of ``bench live``: its cache, and the replay that requests and produces.

``LiveLru`` is the exact object-count LRU of DESIGN §5 (``stream_warmer.lru.LruSim``)
shared by two threads: the replay's requests and the loader's puts (it implements
the loader's ``Cache`` protocol). ``replay_as_app`` looks each request up, then
produces its access event, at the request's due time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

from stream_warmer.events import AccessEvent, encode
from stream_warmer.lru import LruSim
from stream_warmer.settings import Settings
from stream_warmer.warmqueue import QueueEntry


class AppCache(Protocol):
    """The application's cache as the replay uses it."""

    def request(self, tenant: str, key: str, index: int) -> None:
        """Request ``index`` of the trace: look it up, fill it on a miss."""
        ...


class LiveLru:
    """The application's cache for ``--cache lru``: an exact LRU shared by two threads.

    Requests come from the replaying thread, warms from the loader's; one lock keeps
    them in one order. ``position`` is the index of the request being served, so a
    warm knows how many requests after its cause it landed. With ``control`` a second
    LRU of the same capacity sees the same requests and no warms: no warming, live.
    """

    def __init__(self, capacity: int, half: int, *, control: bool = False) -> None:
        self._sim = LruSim(capacity)
        self.control = LruSim(capacity) if control else None
        self._lock = threading.Lock()
        self._half = half
        self.position = 0
        self.puts: list[tuple[str, str, int, int]] = []  # (tenant, key, wall ms, position)

    @property
    def sim(self) -> LruSim:
        """The counters (read them after the run)."""
        return self._sim

    def request(self, tenant: str, key: str, index: int) -> None:
        """Request ``index`` of the trace: a hit, or a miss and insert at MRU."""
        with self._lock:
            self.position = index
            counting = index >= self._half
            self._sim.request((tenant, key), counting)
            if self.control is not None:
                self.control.request((tenant, key), counting)

    def present(self, entries: Sequence[QueueEntry]) -> list[bool]:
        """Loader protocol: which entries the cache holds."""
        with self._lock:
            return [(e.tenant, e.key) in self._sim.lru for e in entries]

    def put(self, entry: QueueEntry, value: bytes) -> None:
        """Loader protocol: insert at MRU (an effective warm when not already cached)."""
        del value
        with self._lock:
            counting = self.position >= self._half
            self._sim.warm((entry.tenant, entry.key), counting)
            self.puts.append((entry.tenant, entry.key, time.time_ns() // 1_000_000,
                              self.position))


@dataclass
class Produced:
    """What the application produced: per request, its send time and Kafka position."""

    ts: list[int] = field(default_factory=list)
    where: dict[tuple[int, int], int] = field(default_factory=dict)  # (partition, offset) -> i
    # i -> the broker's append time (epoch ms), on a topic with LogAppendTime timestamps
    appended: dict[int, int] = field(default_factory=dict)

    def delivered(self, index: int, err: Any, msg: Any) -> None:
        if err is None:
            self.where[(msg.partition(), msg.offset())] = index
            kind, ts = msg.timestamp()
            if kind == TIMESTAMP_LOG_APPEND_TIME:
                self.appended[index] = ts


def due_s(events: Sequence[AccessEvent], rate: float | None, speedup: float | None
          ) -> Iterator[float]:
    """When the application sends each request, in seconds from the first: ``rate``
    events/s, else ``speedup`` x the trace's own time."""
    t0 = events[0].ts if events else 0
    for i, e in enumerate(events):
        yield (i / rate) if rate else (e.ts - t0) / 1000.0 / (speedup or 1.0)


def at_pace(events: Sequence[AccessEvent], rate: float | None, speedup: float | None
            ) -> list[AccessEvent]:
    """The events as serve receives them from ``replay_as_app``: each ``ts`` its send
    time (ms, from the first event's ``ts``), not the trace's."""
    t0 = events[0].ts if events else 0
    return [msgspec.structs.replace(e, ts=t0 + int(due * 1000))
            for e, due in zip(events, due_s(events, rate, speedup), strict=True)]


def replay_as_app(events: Sequence[AccessEvent], cache: AppCache, producer: Any, topic: str,
                  *, rate: float | None, speedup: float | None,
                  stop: Callable[[], bool] = lambda: False,
                  progress: Callable[[int], None] = lambda n: None) -> Produced:
    """Look up, then produce, each request at its due time (until ``stop()``)."""
    produced = Produced()
    start = time.monotonic()
    for i, (e, due) in enumerate(zip(events, due_s(events, rate, speedup), strict=True)):
        if stop():
            break
        wait = start + due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        cache.request(e.tenant, e.key, i)
        ts = time.time_ns() // 1_000_000
        produced.ts.append(ts)
        value = encode(AccessEvent(e.tenant, e.key, ts, e.op, e.size))
        producer.produce(topic, value, e.tenant,
                         on_delivery=lambda err, msg, i=i: produced.delivered(i, err, msg))
        producer.poll(0)
        progress(i + 1)
    producer.flush(30)
    return produced


def start_loader(settings: Settings, cache: LiveLru, stop: threading.Event
                 ) -> threading.Thread:
    """The loader's own code, in a thread of this process, filling the in-process LRU."""
    from stream_warmer.load.loader import Loader
    from stream_warmer.load.origin import resolve_origin
    from stream_warmer.serve.sinks import redis_client

    loader = Loader(redis_client(settings.redis), settings.loader, settings.redis.key_prefix,
                    cache, resolve_origin(settings.loader))
    thread = threading.Thread(target=loader.run, args=(stop,), name="bench-loader",
                              daemon=True)
    thread.start()
    return thread
