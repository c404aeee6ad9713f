"""The Kafka-free core of serve: events in, warm commands out to the sinks.

``handler(now)`` runs per good event (observe, window, precision, batcher); ``flush``
runs per micro-batch (predict once per tenant on its newest window, policy, one
Redis round trip, then the Kafka topic). The app around it owns the consumer,
offsets and checkpoints; this class never sees a Kafka message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stream_warmer.events import AccessEvent, WarmCommand
from stream_warmer.serve.batcher import MicroBatcher, Pending
from stream_warmer.serve.delay import DelayMeter
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.policy import WarmPolicy
from stream_warmer.serve.precision import PrecisionTracker
from stream_warmer.serve.sinks import KafkaSink, RedisSink
from stream_warmer.serve.windows import TenantWindows
from stream_warmer.strategies.base import WarmingStrategy, Window

LatencyObserver = Callable[[float], None]


class WarmEngine:
    """Windows, batcher, strategy, policy and sinks wired in the order of DESIGN §1."""

    def __init__(
        self,
        strategy: WarmingStrategy,
        k: int,
        parts: tuple[TenantWindows, MicroBatcher, WarmPolicy, PrecisionTracker],
        sinks: tuple[RedisSink, KafkaSink],
        metrics: ServeMetrics,
        *,
        clock: Callable[[], float],
        wall_ms: Callable[[], int],
        latency_observer: LatencyObserver | None = None,
    ) -> None:
        self.strategy = strategy
        self._k = k
        self.windows, self.batcher, self.policy, self.precision = parts
        self._redis, self._kafka = sinks
        self._metrics = metrics
        self._clock = clock
        self._wall_ms = wall_ms
        self._latency_observer = latency_observer
        self.commands_written = 0
        self.delay = DelayMeter(clock, wall_ms)  # what the trainer's gate replays at

    def handler(self, now: float) -> Callable[[int, int, AccessEvent], None]:
        """The per-event step for one poll batch, its lookups bound once (the hot path):
        each good event is learnt from, extends its window and queues its tenant."""
        observe, append = self.strategy.observe, self.windows.append
        # only a per-event strategy is asked about a tenant's earlier events of a batch
        add = self.batcher.add if self.strategy.per_event else self.batcher.add_newest
        requested, forget = self.precision.requested, self.forget

        def handle(partition: int, offset: int, event: AccessEvent) -> None:
            observe(event)
            evicted = append(partition, event, now)
            if evicted is not None:
                forget((evicted,))
            requested(event.tenant, event.key)
            add(partition, offset, event)

        return handle

    def flush(self) -> int:
        """Predict, decide and write every pending tenant; return commands written.

        Raises ``SinkUnavailableError`` (from the Redis sink) with nothing half-done
        that matters: call ``abandon`` and re-handle the events.
        """
        written = 0
        while len(self.batcher):
            written += self._flush_chunk(self.batcher.drain())
        return written

    def abandon(self) -> int:
        """Redis is down: drop queued work (its events get re-handled); return tenants dropped."""
        self.policy.release(self._redis.discard())
        self.policy.release(self.policy.take())
        return self.batcher.clear()

    def flush_sink(self) -> int:
        """Write whatever the Redis sink still buffers (checkpoint step 1)."""
        written = self._redis.flush()
        self._kafka.write(written)
        return len(written)

    def sink_ready(self) -> bool:
        """True when Redis answers."""
        return self._redis.ping()

    def forget(self, tenants: Iterable[str]) -> None:
        """Drop every piece of per-tenant state of ``tenants``."""
        gone = list(tenants)
        if gone:
            self.strategy.forget(gone)
            self.policy.forget(gone)
            self.precision.forget(gone)

    def _flush_chunk(self, newest: list[Pending]) -> int:
        strategy = self.strategy
        answered: list[frozenset[str]]
        if strategy.per_event:  # every event is a cause; its window is the event itself
            batch, answered = _every_event(newest)
            windows = [Window(p.tenant, (p.event,)) for p in batch]
        else:
            batch, answered = newest, [frozenset()] * len(newest)
            windows = [self.windows.window(p.tenant) or Window(p.tenant, (p.event,))
                       for p in batch]
        started = self._clock()
        predictions = strategy.predict(windows, self._k)
        self._metrics.inference.observe(self._clock() - started)
        self._metrics.batch_size.observe(len(newest))
        self._metrics.batch_events.observe(len(batch))
        name, version = strategy.name, strategy.model_version
        decide, source = self.policy.decide, self.policy.source
        cause_ts: dict[str, int] = {}  # the causes that earned commands
        for cause, preds, later in zip(batch, predictions, answered, strict=True):
            if decide(cause, preds, name, version, later):
                cause_ts[source(cause)] = cause.event.ts
        commands = self.policy.take()
        if not commands:
            return 0
        self._redis.write(commands)
        written = self._redis.flush()
        self._after_write(written, cause_ts)
        return len(written)

    def _after_write(self, written: list[WarmCommand], cause_ts: dict[str, int]) -> None:
        """Count and time the written commands (``cause_ts``: each cause's ``ts`` by the
        commands' ``source``: a tenant's earlier events of a batch are older than its
        newest, and their warms' latency counts from them)."""
        now, wall = self._clock(), self._wall_ms()
        observe = self._metrics.event_to_warm.observe
        for cmd in written:
            self.precision.issued(cmd.tenant, cmd.key, now)
            latency = (wall - cause_ts[cmd.source]) / 1000.0
            observe(latency)
            self.delay.warm(latency)
            if self._latency_observer is not None:
                self._latency_observer(latency)
        self._kafka.write(written)
        self.commands_written += len(written)
        self._metrics.warm_commands.inc(len(written))


def _every_event(batch: list[Pending]) -> tuple[list[Pending], list[frozenset[str]]]:
    """Each tenant's earlier events of the batch (bounded by the batcher), then its
    newest, each a cause of its own; beside each, the keys its tenant requested after
    it in the batch (a warm of one of those would land after its request)."""
    out: list[Pending] = []
    answered: list[frozenset[str]] = []
    none: frozenset[str] = frozenset()
    for p in batch:
        if not p.earlier:
            out.append(p)
            answered.append(none)
            continue
        later: list[frozenset[str]] = [none]
        keys = {p.event.key}
        for _, ev in reversed(p.earlier[1:]):
            later.append(frozenset(keys))
            keys.add(ev.key)
        later.append(frozenset(keys))
        later.reverse()
        out += [Pending(p.tenant, p.partition, off, ev) for off, ev in p.earlier]
        out.append(p)
        answered += later
    return out, answered
