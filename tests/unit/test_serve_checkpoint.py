"""Checkpoints with fake Kafka and Redis: explicit offsets, asynchronous intervals, and a
producer that cannot deliver (broker outage) neither stalls the loop nor gets committed past."""

from __future__ import annotations

import itertools

import msgspec
from confluent_kafka import Message

from stream_warmer.serve.checkpoint import INTERVAL_FLUSH_S
from tests.unit.serve_fakes import (
    NOW_MS,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    build,
    event_value,
    message,
    stream,
)


def trickle(consumer: FakeConsumer, clock: FakeClock, messages: list[Message],
            every_s: float) -> list[float]:
    """Hand ``messages`` to the consumer one per ``every_s`` of fake time; return the list
    the clock time of every consume call is appended to."""
    pending, start, polls = list(messages), clock.now, []
    consumer.queue = []

    def release(c: FakeConsumer) -> None:
        polls.append(clock.now)
        while pending and clock.now >= start + every_s * (len(messages) - len(pending)):
            c.queue.append(pending.pop(0))

    consumer.before_consume = release
    return polls


def acme(n: int) -> list[Message]:
    return [message(0, i, event_value("acme", str(10 * i), NOW_MS)) for i in range(n)]


def undelivered_before(producer: FakeProducer, offsets: dict[int, int]) -> list[str]:
    """Warm commands of events below ``offsets`` that the producer has not delivered."""
    out = []
    for record in producer.on("warm"):
        _topic, partition, offset = msgspec.json.decode(record[1])["source"].split("/")
        if int(offset) < offsets.get(int(partition), -1) and record not in producer.delivered:
            out.append(f"{partition}/{offset}")
    return out


def test_interval_checkpoints_commit_explicit_offsets_asynchronously_shutdown_waits() -> None:
    clock = FakeClock(step=0.01)
    app, log, consumer, _producer, _client, _strategy = build(
        stream(), clock=clock, BATCH__CHECKPOINT_INTERVAL_S="1", BATCH__MAX_DELAY_MS="5")
    trickle(consumer, clock, stream(), every_s=0.7)
    app.run(max_messages=8)

    kinds = [asynchronous for asynchronous, _offsets in consumer.commits]
    assert kinds.count(True) >= 2  # each interval with something new, without waiting
    assert kinds[-1] is False  # the final checkpoint waits for the broker
    assert consumer.implicit_commits == 0  # never "whatever librdkafka holds as stored"
    assert log.index("producer.flush") < log.index("commit-async")  # side effects first
    assert consumer.committed == {0: 5, 1: 3}


def test_an_async_commit_never_covers_offsets_stored_after_its_checkpoint() -> None:
    # librdkafka gets to an asynchronous commit later, on its own thread; without
    # explicit offsets it commits what is stored *then*, which may cover events whose
    # warm commands are still in the producer's queue (issue 13)
    clock = FakeClock(step=0.01)
    app, _log, consumer, producer, _client, _strategy = build(
        acme(40), clock=clock, BATCH__CHECKPOINT_INTERVAL_S="0.25", BATCH__MAX_DELAY_MS="1",
        BATCH__POLL_BATCH="1", BATCH__MAX_BATCH="1")
    consumer.async_lag = 2  # librdkafka's thread gets to the commit two polls later
    producer.delay_polls = 1  # a delivery report needs a poll more than produce
    violations: list[str] = []
    consumer.check_commit = lambda offsets: violations.extend(
        undelivered_before(producer, offsets))
    app.run(max_messages=40)

    assert sum(asynchronous for asynchronous, _ in consumer.commits) >= 5
    assert violations == []
    assert consumer.committed == {0: 40}


def test_a_failed_async_commit_is_committed_again_by_the_next_checkpoint() -> None:
    clock = FakeClock(step=0.01)
    app, _log, consumer, _producer, _client, _strategy = build(
        acme(3), clock=clock, BATCH__CHECKPOINT_INTERVAL_S="0.5", BATCH__MAX_DELAY_MS="1")
    consumer.fail_async = 1
    app.run(idle_timeout_s=2.0)

    async_commits = [offsets for asynchronous, offsets in consumer.commits if asynchronous]
    assert async_commits[:2] == [{0: 3}, {0: 3}]  # nothing new stored: the same, again
    assert consumer.committed == {0: 3}
    assert len(async_commits) == 2  # confirmed: not committed over and over


def test_a_broker_outage_neither_stalls_the_loop_nor_is_committed_past() -> None:
    clock = FakeClock(step=0.01)
    events = acme(40)
    app, _log, consumer, producer, _client, _strategy = build(
        events, clock=clock, BATCH__CHECKPOINT_INTERVAL_S="1", BATCH__MAX_DELAY_MS="1")
    polls = trickle(consumer, clock, events, every_s=0.5)  # 20 s of events
    back_at = clock.now + 12.0
    outage_waits: list[float] = []  # producer flush timeouts while the broker was gone
    producer.unreachable, producer.stall_clock = True, clock

    def broker_back(offsets: dict[int, int]) -> None:
        assert not producer.unreachable, f"committed {offsets} while the broker was gone"

    def release_and_recover(c: FakeConsumer, release=consumer.before_consume) -> None:  # type: ignore[no-untyped-def]
        assert release is not None
        release(c)
        if clock.now >= back_at and producer.unreachable:
            producer.unreachable = False
            outage_waits.extend(producer.flush_waits)

    consumer.before_consume = release_and_recover
    consumer.check_commit = broker_back
    app.run(max_messages=40)

    gaps = [b - a for a, b in itertools.pairwise(polls)]
    stalled = sum(outage_waits)
    print(f"\nbroker outage 12 s, interval 1 s: longest poll gap {max(gaps):.2f} s, "
          f"{len(outage_waits)} flushes, {stalled:.2f} s waited in all")
    # the loop's own fake-clock reads add up to ~0.15 s; it was 10 s every interval
    assert max(gaps) <= INTERVAL_FLUSH_S + 0.2
    assert stalled <= 6 * INTERVAL_FLUSH_S  # probes after 1, 2, 4, 8 skipped intervals
    assert consumer.committed == {0: 40}
    assert undelivered_before(producer, consumer.committed) == []
    text = app.metrics.render().decode()
    assert 'stream_warmer_checkpoints_skipped_total{trigger="interval"} 1' in text
