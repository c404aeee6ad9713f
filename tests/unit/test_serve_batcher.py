"""Micro-batcher: due at max_batch tenants or max_delay_ms; one entry per tenant."""

from __future__ import annotations

from stream_warmer.events import AccessEvent
from stream_warmer.serve.batcher import MicroBatcher
from stream_warmer.settings import BatchSettings
from tests.unit.serve_fakes import FakeClock


def ev(tenant: str, key: str) -> AccessEvent:
    return AccessEvent(tenant, key, 0)


def test_due_when_full() -> None:
    batcher = MicroBatcher(BatchSettings(max_batch=3, max_delay_ms=1000), FakeClock())
    batcher.add(0, 1, ev("a", "1"))
    batcher.add(0, 2, ev("b", "1"))
    assert not batcher.due()
    batcher.add(0, 3, ev("c", "1"))
    assert batcher.due()


def test_due_after_the_delay_of_its_oldest_entry() -> None:
    clock = FakeClock()
    batcher = MicroBatcher(BatchSettings(max_batch=100, max_delay_ms=20), clock)
    assert not batcher.due() and batcher.time_to_due(0.5) == 0.5
    batcher.add(0, 1, ev("a", "1"))
    clock.advance(0.015)
    batcher.add(0, 2, ev("b", "1"))  # does not restart the delay
    assert not batcher.due()
    assert abs(batcher.time_to_due(0.5) - 0.005) < 1e-9
    clock.advance(0.006)
    assert batcher.due()


def test_a_tenant_with_several_events_is_predicted_once_on_its_newest() -> None:
    batcher = MicroBatcher(BatchSettings(), FakeClock())
    for offset, key in enumerate(["1", "2", "3"]):
        batcher.add(0, offset, ev("a", key))
    batcher.add(1, 0, ev("b", "9"))
    batch = batcher.drain()
    assert [(p.tenant, p.offset, p.event.key) for p in batch] == [("a", 2, "3"), ("b", 0, "9")]
    assert len(batcher) == 0 and not batcher.due()


def test_drain_takes_at_most_max_batch_and_keeps_the_rest() -> None:
    batcher = MicroBatcher(BatchSettings(max_batch=2), FakeClock())
    for i in range(5):
        batcher.add(0, i, ev(f"t{i}", "1"))
    assert [p.tenant for p in batcher.drain()] == ["t0", "t1"]
    assert [p.tenant for p in batcher.drain()] == ["t2", "t3"]
    assert [p.tenant for p in batcher.drain()] == ["t4"]


def test_revoked_partitions_are_discarded() -> None:
    batcher = MicroBatcher(BatchSettings(), FakeClock())
    batcher.add(0, 1, ev("a", "1"))
    batcher.add(1, 1, ev("b", "1"))
    assert batcher.discard_partitions([1]) == 1
    assert [p.tenant for p in batcher.drain()] == ["a"]


def test_a_batch_can_be_backdated_to_when_its_poll_started() -> None:
    clock = FakeClock()
    batcher = MicroBatcher(BatchSettings(max_delay_ms=20), clock)
    polled_at = clock()
    batcher.backdate(polled_at)  # empty: nothing to backdate
    clock.advance(0.015)  # the poll blocked, the event arrived somewhere in there
    batcher.add(0, 1, ev("a", "1"))
    assert not batcher.due()
    batcher.backdate(polled_at)
    clock.advance(0.006)
    assert batcher.due()
    batcher.backdate(clock.now + 1)  # never later than it was
    assert batcher.due()


def test_earlier_events_of_a_tenant_ride_along_bounded() -> None:
    batcher = MicroBatcher(BatchSettings(max_events_per_tenant=3), FakeClock())
    for offset in range(1, 6):
        batcher.add(0, offset, ev("a", str(offset)))
    batcher.add(0, 6, ev("b", "x"))
    a, b = batcher.drain()
    assert (a.offset, a.event.key) == (5, "5")
    assert [(o, e.key) for o, e in a.earlier] == [(3, "3"), (4, "4")]  # newest 2 of 4
    assert b.earlier == ()
    assert batcher.coalesced == 2  # events 1 and 2: never asked about
    batcher.add(0, 7, ev("a", "7"))
    [again] = batcher.drain()
    assert again.earlier == ()  # nothing carried over past a flush


def test_one_event_per_tenant_coalesces_as_before() -> None:
    batcher = MicroBatcher(BatchSettings(max_events_per_tenant=1), FakeClock())
    batcher.add(0, 1, ev("a", "1"))
    batcher.add(0, 2, ev("a", "2"))
    [a] = batcher.drain()
    assert a.offset == 2 and a.earlier == ()
    assert batcher.coalesced == 1


def test_add_newest_keeps_no_earlier_events() -> None:
    batcher = MicroBatcher(BatchSettings(max_events_per_tenant=3), FakeClock())
    for offset in range(1, 4):
        batcher.add_newest(0, offset, ev("a", str(offset)))
    [a] = batcher.drain()
    assert (a.offset, a.event.key, a.earlier) == (3, "3", ())
