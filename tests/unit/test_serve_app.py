"""The serve loop with fake Kafka and Redis: checkpoint order, revoke, Redis outage, DLQ, swap."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from confluent_kafka import KafkaError as _KafkaError
from confluent_kafka import Message

from stream_warmer.errors import KafkaError
from stream_warmer.events import DeadLetter
from stream_warmer.serve.app import ServeApp
from tests.unit.serve_fakes import (
    NOW_MS,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    PlusOne,
    build,
    event_value,
    message,
    serve_settings,
    stream,
)


def test_checkpoint_writes_redis_then_flushes_the_producer_then_commits() -> None:
    app, log, consumer, producer, client, strategy = build(stream())
    stats = app.run(max_messages=8)

    assert stats.consumed == 8 and stats.commands == 2
    assert strategy.predicted == [["5", "12"]]  # once per tenant, on its newest event
    assert log.index("redis.execute") < log.index("store") < log.index("producer.flush")
    assert log.index("producer.flush") < log.index("commit") < log.index("close")
    assert consumer.stored == consumer.committed == {0: 5, 1: 3}
    warm = producer.on("warm")
    assert [(key, msgspec.json.decode(v)["key"]) for _t, v, key in warm] == [
        ("acme", "6"), ("globex", "13")]
    assert msgspec.json.decode(warm[0][1])["source"] == "events/0/4"
    assert "sw:acme:queue" in client.keys_written


def test_revoke_commits_without_inference_and_drops_the_partition() -> None:
    calls = {"n": 0}
    during: list[str] = []

    def revoke_on_second_poll(consumer: FakeConsumer) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            before = len(consumer.log)
            consumer.revoke([1])
            during.extend(consumer.log[before:])

    messages = [message(0, 0, event_value("acme", "1", NOW_MS)),
                message(1, 0, event_value("globex", "10", NOW_MS), key=b"globex")]
    app, _log, consumer, _producer, _client, strategy = build(messages, clock=FakeClock(step=0.01))
    consumer.before_consume = revoke_on_second_poll
    app.run(idle_timeout_s=0.05)

    assert "redis.execute" not in during and "store" not in during  # no inference in it
    assert strategy.forgotten == ["globex", "acme"]  # acme only when close() revokes all
    assert strategy.predicted == [["1"]]  # only acme, at shutdown
    assert consumer.committed == {0: 1}  # globex's event is re-handled by the next owner


def test_redis_outage_pauses_rewinds_and_loses_nothing() -> None:
    clock = FakeClock(step=0.01)
    app, log, consumer, _producer, client, _strategy = build(stream(), clock=clock,
                                                             BATCH__MAX_BATCH="1")
    client.down = True
    polls = {"n": 0}

    def redis_back_later(_consumer: FakeConsumer) -> None:
        polls["n"] += 1
        if polls["n"] == 5:
            assert app.metrics.paused._value.get() == 1
            assert not app.healthy()
            client.down = False

    consumer.before_consume = redis_back_later
    stats = app.run(idle_timeout_s=0.5)

    assert stats.rehandled == 8
    assert log.index("pause") < log.index("resume") < log.index("seek")
    down_at, back_at = log.index("pause"), log.index("resume")
    assert "commit" not in log[down_at:back_at] and "store" not in log[down_at:back_at]
    assert sorted(consumer.seeks) == [(0, 0), (1, 0)]
    assert consumer.committed == {0: 5, 1: 3}
    assert {"sw:acme:warm:6", "sw:globex:warm:13"} <= client.markers
    assert app.metrics.redis_up._value.get() == 1


def test_bad_events_go_to_the_dead_letter_topic_and_are_committed() -> None:
    messages = [message(0, 0, b"{oops"), message(0, 1, event_value("acme", "1", NOW_MS)),
                message(0, 2, None)]
    app, _log, consumer, producer, _client, _strategy = build(messages)
    stats = app.run(max_messages=3)

    letters = [msgspec.json.decode(v) for _t, v, _k in producer.on("dlq")]
    assert [(d["reason"], d["offset"], d["partition"], d["topic"]) for d in letters] == [
        ("not_json", 0, 0, "events"), ("empty", 2, 0, "events")]
    assert msgspec.json.decode(producer.on("dlq")[0][1], type=dict)["original"] == "e29vcHM="
    assert stats.bad == 2 and stats.events == 1
    assert consumer.committed == {0: 3}
    assert 'stream_warmer_bad_events_total{reason="not_json"} 1.0' in app.metrics.render().decode()


def test_a_strategy_from_the_source_is_swapped_in_between_batches() -> None:
    new = PlusOne(version="v2")
    offered = [new]

    def source() -> PlusOne | None:
        return offered.pop() if offered else None

    old = PlusOne(version="v1")
    app, _log, _consumer, producer, _client, _ = build(stream(), strategy=old, source=source)
    app.run(max_messages=8)
    assert old.predicted == [] and new.predicted == [["5", "12"]]
    versions = {msgspec.json.decode(v)["model_version"] for _t, v, _k in producer.on("warm")}
    assert versions == {"v2"}
    text = app.metrics.render().decode()
    assert 'stream_warmer_model_version_info{strategy="plusone",version="v2"} 1.0' in text
    assert "stream_warmer_strategy_swaps_total 1.0" in text


class Adopting(PlusOne):
    def __init__(self, version: str) -> None:
        super().__init__(version=version)
        self.adopted: list[str] = []

    def adopt_state(self, previous: PlusOne) -> None:
        self.adopted.append(previous.model_version)


@pytest.mark.parametrize(("old_version", "adopted"), [("baseline", ["baseline"]), ("v1", [])])
def test_the_first_model_adopts_the_fallback_baselines_state(
    old_version: str, adopted: list[str]
) -> None:
    new = Adopting("v2")
    offered = [new]
    old = PlusOne(version=old_version)
    app, *_ = build(stream(), strategy=old, source=lambda: offered.pop() if offered else None)
    app.run(max_messages=8)
    # model-to-model handovers belong to the watcher; serve seeds only from a baseline
    assert new.adopted == adopted


def test_failed_deliveries_stop_the_app_before_it_commits() -> None:
    app, _log, consumer, producer, _client, _strategy = build(stream())
    producer.fail_with = _KafkaError(_KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                     "Broker: topic authorization failed")
    with pytest.raises(KafkaError, match="not delivered: Broker: topic authorization failed"):
        app.run(max_messages=8)
    assert consumer.committed == {}


def test_consumer_fetches_in_batches_bounded_in_time_and_extra_wins() -> None:
    from stream_warmer.serve.wiring import consumer_conf

    conf = consumer_conf(serve_settings(BATCH__FETCH_MIN_BYTES="1000",
                                        BATCH__FETCH_MAX_WAIT_MS="7"))
    assert (conf["fetch.min.bytes"], conf["fetch.wait.max.ms"]) == (1000, 7)
    assert conf["enable.auto.commit"] is False and callable(conf["on_commit"])
    tuned = consumer_conf(serve_settings(KAFKA__EXTRA='{"fetch.wait.max.ms": "50"}'))
    assert tuned["fetch.wait.max.ms"] == "50"  # operators keep the last word


def test_a_900_kb_bad_event_gets_a_bounded_dead_letter_and_is_committed() -> None:
    # its dead letter carried the whole value (base64: 1.2 MB): MSG_SIZE_TOO_LARGE from
    # produce, no commit, and every restart died on the same event (issue 13)
    big = b"\x00not json " + bytes(range(256)) * 3515
    assert 899_000 < len(big) < 901_000
    messages = [message(0, 0, big), message(0, 1, event_value("acme", "1", NOW_MS))]
    app, _log, consumer, producer, _client, _strategy = build(messages)
    stats = app.run(max_messages=2)

    [(_topic, value, key)] = producer.on("dlq")
    assert len(value) + len(key.encode()) <= 65_536  # events.dead_letter_max_bytes
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert (letter.reason, letter.topic, letter.partition, letter.offset) == (
        "not_json", "events", 0, 0)
    assert letter.truncated and big.startswith(letter.original)
    assert 40_000 < len(letter.original) < len(big)
    assert letter.original_size == len(big)
    assert letter.original_sha256 == hashlib.sha256(big).hexdigest()
    assert consumer.committed == {0: 2} and stats.bad == 1 and stats.commands == 1


def test_a_dead_letter_the_broker_refuses_is_replaced_by_a_minimal_one() -> None:
    bad = b"{" + b"x" * 5000
    messages = [message(0, 0, bad), message(0, 1, event_value("acme", "1", NOW_MS))]
    app, _log, consumer, producer, _client, _strategy = build(messages)
    producer.topic_max_bytes["dlq"] = 1000  # the topic's max.message.bytes is lower than ours
    app.run(max_messages=2)

    full, minimal = (msgspec.json.decode(v, type=DeadLetter) for _t, v, _k in producer.on("dlq"))
    assert full.original == bad and not full.truncated
    assert (minimal.reason, minimal.offset, minimal.original) == ("not_json", 0, b"")
    assert minimal.truncated and minimal.original_size == len(bad)
    assert minimal.original_sha256 == full.original_sha256
    assert consumer.committed == {0: 2}
    text = app.metrics.render().decode()
    assert 'stream_warmer_produce_rejected_total{outcome="replaced",topic="dlq"} 1.0' in text


def test_records_the_producer_refuses_are_counted_and_never_stop_the_app() -> None:
    messages = [message(0, 0, b"{oops"), message(0, 1, event_value("acme", "1", NOW_MS))]
    app, _log, consumer, producer, _client, _strategy = build(messages)
    producer.max_bytes = 20  # refuses every record, dead letters and their fallbacks too
    stats = app.run(max_messages=2)

    assert producer.records == [] and stats.bad == 1 and stats.commands == 1
    assert consumer.committed == {0: 2}
    text = app.metrics.render().decode()
    assert 'stream_warmer_produce_rejected_total{outcome="dropped",topic="dlq"} 1.0' in text
    assert 'stream_warmer_produce_rejected_total{outcome="dropped",topic="warm"} 1.0' in text


def test_an_event_from_the_future_is_dead_lettered_not_warmed() -> None:
    ahead = NOW_MS + 300_001  # events.future_ts_tolerance_ms (5 min) + 1 ms ahead of serve
    messages = [message(0, 0, event_value("acme", "1", ahead)),
                message(0, 1, event_value("acme", "2", NOW_MS + 300_000))]
    app, _log, consumer, producer, _client, strategy = build(messages)
    app.run(max_messages=2)

    [letter] = [msgspec.json.decode(v, type=DeadLetter) for _t, v, _k in producer.on("dlq")]
    assert (letter.reason, letter.offset) == ("future_ts", 0)
    assert [e.key for e in strategy.observed] == ["2"]
    assert consumer.committed == {0: 2}


def test_a_per_event_strategy_is_asked_about_every_event_of_a_batch() -> None:
    odd = [message(0, i, event_value("acme", str(2 * i + 1), NOW_MS)) for i in range(4)]
    _app, producer = _run_per_event(odd, max_events=16)
    warmed = sorted(msgspec.json.decode(v)["key"] for _t, v, _k in producer.on("warm"))
    assert warmed == ["2", "4", "6", "8"]  # one per event
    _coalesced, producer2 = _run_per_event(odd, max_events=1)  # coalesced
    assert [msgspec.json.decode(v)["key"] for _t, v, _k in producer2.on("warm")
            ] == ["8"]  # the newest only


def test_each_warm_is_timed_from_its_own_event_and_coalesced_events_are_counted() -> None:
    odd = [message(0, i, event_value("acme", str(2 * i + 1), NOW_MS - 40 + 10 * i))
           for i in range(4)]
    app, _producer = _run_per_event(odd, max_events=16)
    text = app.metrics.render().decode()
    # 40, 30, 20 and 10 ms: not all four from the newest event's ts
    assert "stream_warmer_event_to_warm_seconds_sum 0.1" in text, text
    assert "stream_warmer_batch_events_sum 4.0" in text
    assert "stream_warmer_batch_tenants_sum 1.0" in text
    assert "stream_warmer_coalesced_events_total 0.0" in text
    bounded, producer = _run_per_event(odd, max_events=2)
    text = bounded.metrics.render().decode()
    assert "stream_warmer_coalesced_events_total 2.0" in text  # keys 1 and 3: never asked
    assert len(producer.on("warm")) == 2


def _run_per_event(messages: list[Message], *, max_events: int
                   ) -> tuple[ServeApp, FakeProducer]:
    """Serve ``messages`` with a per-event PlusOne (as the baselines declare: each event
    predicts alone) at ``batch.max_events_per_tenant``."""
    per_event = PlusOne()
    per_event.per_event = True
    app, _log, _c, producer, _r, _s = build(messages, strategy=per_event,
                                            BATCH__MAX_EVENTS_PER_TENANT=str(max_events))
    app.run(max_messages=len(messages))
    return app, producer


def test_a_prediction_the_batch_already_answered_is_not_written() -> None:
    app, producer = _run_per_event(stream(), max_events=16)
    # acme asked for 1..5 in one batch: the warms of 2..5 would land after their requests
    warmed = sorted(msgspec.json.decode(v)["key"] for _t, v, _k in producer.on("warm"))
    assert warmed == ["13", "6"]
    text = app.metrics.render().decode()
    assert 'stream_warmer_warm_dropped_total{reason="answered"} 6.0' in text


def test_the_group_is_cooperative_by_default_and_extra_may_not_change_it() -> None:
    from stream_warmer.errors import ConfigError
    from stream_warmer.serve.wiring import consumer_conf
    from stream_warmer.settings import load_settings

    assert consumer_conf(serve_settings())["partition.assignment.strategy"] == (
        "cooperative-sticky")
    eager = serve_settings(KAFKA__PARTITION_ASSIGNMENT_STRATEGY="roundrobin")
    assert consumer_conf(eager)["partition.assignment.strategy"] == "roundrobin"
    for env in ({"STREAM_WARMER_KAFKA__PARTITION_ASSIGNMENT_STRATEGY": "sticky"},
                {"STREAM_WARMER_KAFKA__EXTRA": '{"partition.assignment.strategy": "range"}'}):
        with pytest.raises(ConfigError, match="STREAM_WARMER_KAFKA__"):
            load_settings(None, env)


def test_window_tenants_above_the_lstm_state_slots_are_refused_at_load() -> None:
    from stream_warmer.errors import ConfigError
    from stream_warmer.settings import load_settings

    lstm = {"STREAM_WARMER_STRATEGY__NAME": "lstm"}
    defaults = load_settings(None, lstm)  # the defaults agree
    assert defaults.window.max_tenants <= defaults.model.max_state_slots
    too_many = lstm | {"STREAM_WARMER_WINDOW__MAX_TENANTS": "100000"}
    with pytest.raises(ConfigError, match=r"WINDOW__MAX_TENANTS.*100000.*MODEL__MAX_STATE_SLOTS"):
        load_settings(None, too_many)
    load_settings(None, too_many | {"STREAM_WARMER_MODEL__MAX_STATE_SLOTS": "100000"})
    load_settings(None, {"STREAM_WARMER_WINDOW__MAX_TENANTS": "100000"})  # no LSTM: no slots


def test_every_bounded_map_has_a_size_and_a_capacity_metric() -> None:
    app, *_ = build(stream(), POLICY__MAX_PENDING="500", WINDOW__MAX_TENANTS="1000")
    app.run(max_messages=8)

    text = app.metrics.render().decode()
    sizes = {"windows": 2, "batcher": 0, "policy_dedup": 2, "policy_budgets": 2,
             "policy_pending": 0, "precision_outstanding": 2, "precision_tenants": 0}
    for name, size in sizes.items():
        assert f'stream_warmer_bounded_entries{{map="{name}"}} {size}.0' in text, name
    assert 'stream_warmer_bounded_capacity{map="windows"} 1000.0' in text
    assert 'stream_warmer_bounded_capacity{map="policy_pending"} 500.0' in text
    assert 'stream_warmer_bounded_capacity{map="policy_dedup"} 1e+06' in text
    assert "stream_warmer_precision_overflowed_total 0.0" in text


def test_the_serving_markovs_successor_tables_are_measured_against_their_budget() -> None:
    """Six one-successor rows (acme 1..4, globex 10..11) through a budget of three: the
    metrics show the charge at the budget, three rows, and three evictions."""
    from stream_warmer.strategies.baselines import Markov
    from tests.reference_tracker import row_bytes

    budget = 3 * row_bytes(1, [2])
    markov = Markov(table_bytes=budget)
    app, *_ = build(stream(), strategy=markov)  # type: ignore[arg-type]
    app.run(max_messages=8)
    text = app.metrics.render().decode()
    assert f"stream_warmer_successor_table_bytes {budget}.0" in text
    assert f"stream_warmer_successor_table_budget_bytes {budget}.0" in text
    assert "stream_warmer_successor_table_rows 3.0" in text
    assert "stream_warmer_successor_table_evicted_rows 3.0" in text
