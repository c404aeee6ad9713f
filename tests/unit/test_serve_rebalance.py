"""Rebalances with fake Kafka and Redis: incremental (cooperative) assignment keeps the
state of partitions that do not move; eager assignment wipes it; an outage pauses new ones."""

from __future__ import annotations

import msgspec
import pytest

from tests.unit.serve_fakes import (
    NOW_MS,
    FakeClock,
    FakeConsumer,
    build,
    event_value,
    message,
)


def on_poll(consumer: FakeConsumer, actions: dict[int, object]) -> None:
    """Run ``actions[n]`` (a callable taking the consumer) before the n-th consume."""
    calls = {"n": 0}

    def hook(c: FakeConsumer) -> None:
        calls["n"] += 1
        action = actions.get(calls["n"])
        if callable(action):
            action(c)

    consumer.before_consume = hook


@pytest.mark.parametrize(("strategy", "kept"), [("cooperative-sticky", True), ("range", False)])
def test_a_rebalance_keeps_the_state_of_partitions_that_do_not_move(
    strategy: str, kept: bool
) -> None:
    messages = [message(0, 0, event_value("acme", "1", NOW_MS)),
                message(0, 1, event_value("acme", "2", NOW_MS)),
                message(1, 0, event_value("globex", "10", NOW_MS), key=b"globex"),
                message(0, 2, event_value("acme", "3", NOW_MS))]
    app, _log, consumer, _producer, _client, plus = build(
        messages, clock=FakeClock(step=0.01), KAFKA__PARTITION_ASSIGNMENT_STRATEGY=strategy)
    consumer.queue = messages[:3]  # acme's third event comes after the rebalance
    windows: list[int] = []
    owned: list[set[int]] = []
    revoked: list[float] = []  # partitions revoked so far, as the metric counts them

    def rebalance(c: FakeConsumer) -> None:
        c.rebalance(revoke=[1])  # partition 1 moves to another replica
        if not any(m is messages[3] for m in c.queue):  # eager: re-fetched already
            c.queue.append(messages[3])

    def look(_c: FakeConsumer) -> None:
        window = app._engine.windows.window("acme")
        windows.append(0 if window is None else len(window.events))
        owned.append(set(app.rebalancer.owned))
        revoked.append(app.metrics.rebalances.labels("revoked")._value.get())

    on_poll(consumer, {2: rebalance, 4: look})
    stats = app.run(idle_timeout_s=0.2)

    assert owned == [{0}]
    if kept:  # cooperative: only partition 1's tenant went; acme's window went on growing
        assert plus.forgotten[:1] == ["globex"] and "acme" not in plus.forgotten[:-1]
        assert windows == [3] and stats.consumed == 4
    else:  # eager: every partition was revoked; acme's state was dropped and re-read
        assert plus.forgotten[:2] == ["acme", "globex"]
        assert windows == [3] and stats.consumed == 6  # rebuilt from the stream, twice read
    assert consumer.committed == {0: 3}
    assert revoked == [1 if kept else 2]


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_partitions_assigned_during_a_redis_outage_are_paused_at_once(strategy: str) -> None:
    messages = [message(0, 0, event_value("acme", "1", NOW_MS)),
                message(2, 0, event_value("initech", "20", NOW_MS), key=b"initech"),
                message(2, 1, event_value("initech", "21", NOW_MS), key=b"initech")]
    app, log, consumer, producer, client, _plus = build(
        messages, clock=FakeClock(step=0.01), BATCH__MAX_BATCH="1",
        KAFKA__PARTITION_ASSIGNMENT_STRATEGY=strategy)
    client.down = True
    seen: list[bool] = []

    def assign_during_outage(c: FakeConsumer) -> None:
        assert app._outage.active
        before = len(c.log)
        c.rebalance(add=[2])
        assign = "incremental_assign" if strategy == "cooperative-sticky" else "assign"
        seen.append(c.log[before:] == [assign, "pause"] and 2 in c.paused)

    def redis_back(_c: FakeConsumer) -> None:
        client.down = False

    on_poll(consumer, {3: assign_during_outage, 6: redis_back})
    app.run(idle_timeout_s=1.0)

    assert seen == [True]
    assert log.index("pause") < log.index("resume")
    assert consumer.committed == {0: 1, 2: 2}
    warmed = sorted(msgspec.json.decode(v)["key"] for _t, v, _k in producer.on("warm"))
    assert warmed == ["2", "22"]  # initech predicted once, on its newest event


def test_lost_partitions_are_dropped_and_never_committed() -> None:
    messages = [message(0, 0, event_value("acme", "1", NOW_MS)),
                message(1, 0, event_value("globex", "10", NOW_MS), key=b"globex")]
    app, _log, consumer, _producer, _client, plus = build(
        messages, clock=FakeClock(step=0.01), BATCH__MAX_DELAY_MS="1")

    def lose(c: FakeConsumer) -> None:
        assert c.stored == {0: 1, 1: 1}  # stored, not committed yet
        lost = [tp for tp in c.assigned if tp.partition == 1]
        c.callbacks["on_lost"](c, lost)
        c.assigned = [tp for tp in c.assigned if tp.partition != 1]

    on_poll(consumer, {3: lose})
    app.run(idle_timeout_s=0.2)

    assert plus.forgotten[0] == "globex"
    assert all(1 not in offsets for _asynchronous, offsets in consumer.commits)
    assert consumer.committed == {0: 1}


def test_a_revoked_partition_gets_its_stored_offsets_committed_in_the_callback() -> None:
    messages = [message(0, 0, event_value("acme", "1", NOW_MS)),
                message(1, 0, event_value("globex", "10", NOW_MS), key=b"globex")]
    app, _log, consumer, _producer, _client, _plus = build(
        messages, clock=FakeClock(step=0.01), BATCH__MAX_DELAY_MS="1")
    in_callback: list[tuple[bool, dict[int, int]]] = []

    def revoke(c: FakeConsumer) -> None:
        assert c.stored == {0: 1, 1: 1} and c.committed == {}
        before = len(c.commits)
        c.rebalance(revoke=[1])
        in_callback.extend(c.commits[before:])

    on_poll(consumer, {3: revoke})
    app.run(idle_timeout_s=0.2)

    assert in_callback == [(False, {0: 1, 1: 1})]  # synchronous, the moving partition too
    assert consumer.committed == {0: 1, 1: 1}
