"""Rebalance callbacks of one serve replica, for incremental and eager assignment alike.

With ``kafka.partition_assignment_strategy = cooperative-sticky`` (the default) a
rebalance hands ``on_assign`` only the partitions added and ``on_revoke`` only those
that move away: every other partition keeps its windows, batcher entries and
strategy state. With an eager strategy (range, roundrobin) both get the whole
assignment. Either way each callback touches only the partitions it is given, and
stays short (no inference):

- assign: own them; while Redis is down, assign them here and pause them at once
  (otherwise confluent-kafka assigns them after the callback, unpaused, and the
  outage would pause them only at its next retry);
- revoke: drop their batcher entries (their events are re-handled by the next
  owner), checkpoint (flush, then commit what is stored, theirs included), then
  forget their offsets, windows and per-tenant state;
- lost: the same without the checkpoint: another member may own them already, and
  a commit would overwrite its progress.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import TopicPartition

from stream_warmer.serve.checkpoint import Checkpointer
from stream_warmer.serve.engine import WarmEngine
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.serve.outage import Outage
from stream_warmer.serve.stats import Offsets

log = logging.getLogger(__name__)


class Rebalancer:
    """``on_assign`` / ``on_revoke`` / ``on_lost`` of one app, and what it owns now."""

    def __init__(self, engine: WarmEngine, checkpoints: Checkpointer, outage: Outage, *,
                 topic: str, offsets: Offsets, metrics: ServeMetrics,
                 cooperative: bool) -> None:
        self._topic, self._engine, self._offsets = topic, engine, offsets
        self._checkpoints, self._outage, self._metrics = checkpoints, outage, metrics
        self._cooperative = cooperative
        self.owned: set[int] = set()

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions added (cooperative) or the whole new assignment (eager)."""
        parts = self._ours(partitions)
        self.owned.update(parts)
        if self._outage.active and partitions:
            if self._cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            consumer.pause(partitions)
        self._metrics.rebalances.labels("assigned").inc(len(parts))
        log.info("assigned", extra={"partitions": parts, "owned": sorted(self.owned),
                                    "paused": self._outage.active})

    def on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """Final flush and commit for what is stored, then drop those partitions."""
        parts = self._ours(partitions)
        self._engine.batcher.discard_partitions(parts)
        if parts and not self._outage.active:
            self._checkpoints.run("revoke")
        self._drop(parts, "revoked")
        log.info("revoked", extra={"partitions": parts, "owned": sorted(self.owned)})

    def on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """Drop the partitions without committing anything of theirs."""
        parts = self._ours(partitions)
        self._engine.batcher.discard_partitions(parts)
        self._drop(parts, "lost")
        log.warning("partitions lost", extra={"partitions": parts, "owned": sorted(self.owned)})

    def _ours(self, partitions: list[TopicPartition]) -> list[int]:
        return sorted(tp.partition for tp in partitions if tp.topic == self._topic)

    def _drop(self, parts: list[int], event: str) -> None:
        self._offsets.drop(parts)
        self._engine.forget(self._engine.windows.drop_partitions(parts))
        self.owned.difference_update(parts)
        self._metrics.rebalances.labels(event).inc(len(parts))
