"""Fake confluent-kafka clients for the serve unit tests (re-exported by ``serve_fakes``):
a consumer with librdkafka's commit and rebalance behaviour, and a producer whose
deliveries can fail, lag or stall."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

if TYPE_CHECKING:
    from tests.unit.serve_fakes import FakeClock


class FakeConsumer:
    """Hands out pre-built messages in batches; records offsets, commits, pauses, seeks.

    Commits behave like librdkafka's: a synchronous one takes effect at once; an
    asynchronous one takes effect at the next ``consume``/``poll`` (librdkafka's thread
    gets to it later), and one without explicit offsets then commits what is stored
    *at that time*. ``on_commit`` (from the consumer config) hears of every commit at
    the next ``consume``/``poll``. ``check_commit`` is called with each commit as it
    takes effect. ``rebalance`` runs a group change the way the assignment strategy
    in the consumer config would (``cooperative``: only what moves; eager: all), and
    only assigned, unpaused partitions are consumed.
    """

    def __init__(self, log: list[str], messages: list[Message], partitions: int = 2,
                 topic: str = "events") -> None:
        self.log = log
        self.queue = list(messages)
        self.history = list(messages)
        self.topic = topic
        self.assigned = [TopicPartition(topic, p) for p in range(partitions)]
        self.stored: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.commits: list[tuple[bool, dict[int, int]]] = []  # (asynchronous, offsets)
        self.paused: set[int] = set()
        self.seeks: list[tuple[int, int]] = []
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.before_consume: Callable[[FakeConsumer], None] | None = None
        self.check_commit: Callable[[dict[int, int]], None] | None = None
        self.on_commit: Callable[..., None] | None = None
        self.cooperative = True
        self.async_lag = 1  # an asynchronous commit takes effect at the lag-th consume
        self.implicit_commits = 0  # commits that named no offsets (librdkafka's stored)
        self.fail_async = 0  # this many asynchronous commits fail (reported to on_commit)
        self._async: list[tuple[int, dict[int, int] | None]] = []  # (consumes left, offsets)
        self._reports: list[tuple[KafkaError | None, dict[int, int]]] = []
        self._assigned_in_callback = False
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks
        first, self.assigned = [tp.partition for tp in self.assigned], []
        self._assign_round(first, initial=True)

    def rebalance(self, revoke: Sequence[int] = (), add: Sequence[int] = ()) -> None:
        """One group change: ``revoke`` move away, ``add`` come here. Cooperative: the
        callbacks get only those (``on_assign`` even when there are none, as librdkafka
        does); eager: all is revoked, then what stays and ``add`` are assigned."""
        owned = [tp.partition for tp in self.assigned]
        if self.cooperative:
            gone = [p for p in revoke if p in owned]
            if gone:
                self._revoke_round(gone)
            self._assign_round([p for p in add if p not in owned])
        else:
            self._revoke_round(owned)
            self._assign_round([p for p in owned if p not in revoke] + list(add))

    def revoke(self, partitions: list[int]) -> None:
        self.rebalance(revoke=partitions)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        assert self.cooperative
        self._assigned_in_callback = True
        self._add([tp.partition for tp in partitions])
        self.log.append("incremental_assign")

    def assign(self, partitions: list[TopicPartition]) -> None:
        assert not self.cooperative
        self._assigned_in_callback = True
        self.assigned = []
        self._add([tp.partition for tp in partitions])
        self.log.append("assign")

    def _revoke_round(self, parts: list[int]) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(self.topic, p) for p in parts])
        self.assigned = [tp for tp in self.assigned if tp.partition not in parts]
        self.paused -= set(parts)
        for p in parts:  # librdkafka forgets what was stored for an unassigned partition
            self.stored.pop(p, None)

    def _assign_round(self, parts: list[int], initial: bool = False) -> None:
        # like confluent-kafka: the callback, then an (incremental) assign unless it did
        self._assigned_in_callback = False
        self.callbacks["on_assign"](self, [TopicPartition(self.topic, p) for p in parts])
        if not self._assigned_in_callback:
            self._add(parts, refetch=not initial)

    def _add(self, parts: list[int], refetch: bool = True) -> None:
        """Assign ``parts``; fetching them starts at their committed offsets."""
        owned = {tp.partition for tp in self.assigned}
        for p in parts:
            if p in owned:
                continue
            self.assigned.append(TopicPartition(self.topic, p))
            if refetch:
                start = self.committed.get(p, 0)
                self.queue = [m for m in self.queue if m.partition() != p] + [
                    m for m in self.history if m.partition() == p and m.offset() >= start]

    def _serve_callbacks(self) -> None:
        pending, self._async = self._async, []
        for left, offsets in pending:
            if left > 1:
                self._async.append((left - 1, offsets))
            else:
                self._take_effect(dict(self.stored) if offsets is None else offsets)
        reports, self._reports = self._reports, []
        for err, done in reports:
            if self.on_commit is not None:
                self.on_commit(err, [TopicPartition(self.topic, p, o) for p, o in done.items()])

    def _take_effect(self, offsets: dict[int, int], asynchronous: bool = True) -> None:
        if asynchronous and self.fail_async:
            self.fail_async -= 1
            self._reports.append((KafkaError(KafkaError.REBALANCE_IN_PROGRESS), offsets))
            return
        if self.check_commit is not None:
            self.check_commit(offsets)
        self.committed.update(offsets)
        self._reports.append((None, offsets))

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self._serve_callbacks()
        if self.before_consume is not None:
            self.before_consume(self)
        out = []
        rest = []
        mine = {tp.partition for tp in self.assigned} - self.paused
        for msg in self.queue:
            if len(out) < num_messages and msg.partition() in mine:
                out.append(msg)
            else:
                rest.append(msg)
        self.queue = rest
        return out

    def poll(self, timeout: float) -> Message | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in self.assigned}
        for tp in offsets:
            assert tp.partition in mine, f"stored an offset of unassigned partition {tp}"
            self.stored[tp.partition] = tp.offset
        self.log.append("store")

    def commit(self, message: Message | None = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        explicit = None if offsets is None else {tp.partition: tp.offset for tp in offsets}
        self.implicit_commits += explicit is None
        self.commits.append((asynchronous, dict(self.stored) if explicit is None else explicit))
        self.log.append("commit-async" if asynchronous else "commit")
        if asynchronous:
            self._async.append((self.async_lag, explicit))
            return None
        pending, self._async = self._async, []  # one queue to the coordinator: in order
        for _left, earlier in pending:
            self._take_effect(dict(self.stored) if earlier is None else earlier)
        done = dict(self.stored) if explicit is None else explicit
        self._take_effect(done, asynchronous=False)
        return [TopicPartition(self.topic, p, o) for p, o in done.items()]

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}
        self.log.append("pause")

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}
        self.log.append("resume")

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.log.append("seek")
        self.queue = [m for m in self.queue if m.partition() != tp.partition]
        self.queue += [m for m in self.history
                       if m.partition() == tp.partition and m.offset() >= tp.offset]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, 100)

    def close(self) -> None:
        # like librdkafka: leaving the group revokes what is assigned
        self.log.append("close")
        self.callbacks["on_revoke"](self, self.assigned)
        self._async = [(1, offsets) for _left, offsets in self._async]
        self._serve_callbacks()
        self.closed = True


class FakeProducer:
    """Records produced records; ``flush`` logs itself.

    Like librdkafka, ``produce`` refuses a record over ``max_bytes`` (key + value) with
    ``MSG_SIZE_TOO_LARGE``; ``topic_max_bytes`` makes the broker refuse larger records
    on a topic in their delivery report, and ``fail_with`` fails every delivery.
    ``delivered`` lists what was delivered; ``unreachable`` and ``delay_polls`` hold
    deliveries back (see ``__init__``).
    """

    def __init__(self, log: list[str], max_bytes: int = 1_000_000) -> None:
        self.log = log
        self.max_bytes = max_bytes
        self.records: list[tuple[str, bytes, str]] = []
        self.refused: list[tuple[str, bytes, str]] = []
        self.delivered: list[tuple[str, bytes, str]] = []
        self.fail_with: KafkaError | None = None
        self.topic_max_bytes: dict[str, int] = {}
        # a broker that does not answer: nothing is delivered, and ``flush`` waits out
        # its whole timeout on ``stall_clock``
        self.unreachable = False
        self.stall_clock: FakeClock | None = None
        self.flush_waits: list[float] = []
        # a record's report comes only from the ``delay_polls``-th poll after its produce
        self.delay_polls = 0
        self._reports: list[tuple[Any, str, int, int, int]] = []  # report, topic, size, i, age

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any = None) -> None:
        size = len(value) + len(key.encode())
        if size > self.max_bytes:
            self.refused.append((topic, value, key))
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.records.append((topic, value, key))
        self._reports.append((on_delivery, topic, size, len(self.records) - 1, 0))

    def poll(self, timeout: float, everything: bool = False) -> int:
        if self.unreachable:
            return 0
        reports, self._reports = self._reports, []
        served = 0
        for report, topic, size, index, age in reports:
            if age < self.delay_polls and not everything:
                self._reports.append((report, topic, size, index, age + 1))
                continue
            err = self.fail_with
            if err is None and size > self.topic_max_bytes.get(topic, size):
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
            if err is None:
                self.delivered.append(self.records[index])
            if report is not None:
                report(err, None)
            served += 1
        return served

    def flush(self, timeout: float) -> int:
        self.log.append("producer.flush")
        self.flush_waits.append(timeout)
        if self.unreachable:
            if self.stall_clock is not None:
                self.stall_clock.advance(timeout)
            return len(self._reports)
        self.poll(0, everything=True)
        return 0

    def __len__(self) -> int:
        return len(self._reports)

    def on(self, topic: str) -> list[tuple[str, bytes, str]]:
        return [r for r in self.records if r[0] == topic]
