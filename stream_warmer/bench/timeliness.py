"""Timeliness in ``bench live``: which request caused each warm, and how late it landed.

Every warm that reached the cache is tied to the warm command that asked for it (the
newest one for that (tenant, key) issued before the put), and through the command's
``source`` offset to the request that caused it: its event-to-cache latency in ms
and its delay in requests, the L of ``evaluate --delay``.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from stream_warmer.bench.appcache import Produced
from stream_warmer.events import WarmCommand
from stream_warmer.settings import Settings


class Landed(NamedTuple):
    """A warm that reached the cache, tied to the request that caused it."""

    cause: int  # index of the causing request
    issued_at: int  # the command's issue time at serve (epoch ms)
    at_ms: int  # when it reached the cache (epoch ms)
    delay: int  # requests served between the cause and the landing

    def latency_ms(self, produced: Produced) -> float:
        """Request -> in the cache."""
        return float(self.at_ms - produced.ts[self.cause])


def match_warms(puts: Sequence[tuple[str, str, int, int]], commands: Sequence[WarmCommand],
                produced: Produced) -> list[Landed]:
    """Step 3: each put, tied to the command (and so the request) that caused it.

    A put of (tenant, key) at wall time t is matched to the newest command for that
    pair issued at or before t; its ``source`` offset names the causing request.
    """
    by_item: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for cmd in commands:
        cause = cause_index(cmd.source, produced)
        if cause is not None:
            by_item.setdefault((cmd.tenant, cmd.key), []).append((cmd.issued_at, cause))
    for issued in by_item.values():
        issued.sort()
    out = []
    for tenant, key, at_ms, position in puts:
        found = by_item.get((tenant, key), [])
        j = bisect.bisect_right(found, (at_ms, 1 << 62)) - 1
        if j < 0:
            continue
        issued_at, cause = found[j]
        out.append(Landed(cause, issued_at, at_ms, position - cause))
    return out


# where a warm's time goes, in the order it travels
STAGES = ("produce", "serve", "load")


def stage_ms(landed: Sequence[Landed], produced: Produced) -> dict[str, list[float]]:
    """Each landed warm's path, split where it is timed (ms per stage):

    * ``produce``: the request's event, from the application's ``produce`` to the
      broker's append (producer linger, the send; needs a LogAppendTime topic);
    * ``serve``: appended -> the warm command queued (the consumer's fetch wait, the
      micro-batch wait, inference, the policy and the Redis round trip);
    * ``load``: queued -> in the cache (the loader's wake-up, pop, presence check,
      origin fetch and cache write).
    """
    out: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for w in landed:
        appended = produced.appended.get(w.cause)
        if appended is None:
            continue
        out["produce"].append(float(appended - produced.ts[w.cause]))
        out["serve"].append(float(w.issued_at - appended))
        out["load"].append(float(w.at_ms - w.issued_at))
    return out


def cause_index(source: str, produced: Produced) -> int | None:
    """The index of the request a command's ``source`` (topic/partition/offset) names."""
    try:
        _, partition, offset = source.rsplit("/", 2)
        return produced.where.get((int(partition), int(offset)))
    except ValueError:
        return None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank), nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))])


def uplift_ratio(live: float, none: float, offline: float) -> float:
    """(live - none) / (offline - none): the share of the offline uplift the loop kept."""
    gain = offline - none
    return (live - none) / gain if gain > 1e-12 else float("nan")


def read_commands(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0
                  ) -> list[WarmCommand]:
    """Every warm command on ``topic`` (a fresh group from the earliest offset)."""
    import msgspec
    from confluent_kafka import Consumer

    conf = settings.kafka.client_config() | {
        "group.id": f"bench-live-read-{uuid.uuid4().hex[:10]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False}
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    decoder = msgspec.json.Decoder(WarmCommand)
    out: list[WarmCommand] = []
    deadline, idle_since = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.2)
            for msg in batch:
                value = msg.value()
                if msg.error() is None and value is not None:
                    out.append(decoder.decode(value))
            if batch:
                idle_since = time.monotonic()
            if len(out) >= expected and (out or time.monotonic() - idle_since > 3.0):
                break
    finally:
        consumer.close()
    return out
