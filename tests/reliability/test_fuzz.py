"""Property-based fuzzing of the event decoder and of serve's whole handle path.

The decoder must turn any bytes into an event that keeps the contract or a reason;
serve, fed any mix of such records (fake Kafka and Redis, the LSTM serving), must
stay up, dead-letter each bad record with its reason, warm the good ones and commit
to the end of every partition.
"""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_warmer.events import (
    MAX_TS_MS,
    AccessEvent,
    BadEvent,
    DeadLetter,
    EventDecoder,
    encode,
    valid_tenant,
)
from stream_warmer.serve.app import ServeApp
from stream_warmer.settings import load_settings
from tests.reliability.conftest import Report
from tests.reliability.hostile import MAX_KEY_BYTES, catalogue_size, hostile
from tests.tiny_model import tiny_lstm
from tests.unit.serve_fakes import (
    FakeClients,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeRedis,
    event_value,
    message,
)

pytestmark = pytest.mark.reliability
NOW_MS = 1_800_000_000_000
DECODER = EventDecoder()

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
fields = st.fixed_dictionaries({}, optional={
    "tenant": st.text(max_size=70) | json_values,
    "key": st.text(max_size=600) | json_values,
    "ts": st.integers(-10, MAX_TS_MS + 10) | st.floats() | json_values,
    "op": st.sampled_from(["get", "set", "del", "put", ""]) | json_values,
    "size": st.integers(-5, 10**12) | json_values,
})


def _check_decoded(got: AccessEvent | BadEvent) -> None:
    if isinstance(got, BadEvent):
        assert got.reason and isinstance(got.detail, str)
        return
    assert valid_tenant(got.tenant)
    assert got.key and len(got.key.encode()) <= MAX_KEY_BYTES
    assert 0 <= got.ts <= NOW_MS + 300_000 and isinstance(got.ts, int)
    assert got.size is None or got.size >= 0
    assert DECODER.decode(encode(got), NOW_MS) == got  # what serve accepts, it re-reads


TRIED = {"bytes": 0, "json": 0, "records": 0, "streams": 0}


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=2048))
def _any_bytes(payload: bytes) -> None:
    TRIED["bytes"] += 1
    _check_decoded(DECODER.decode(payload, NOW_MS))


@settings(max_examples=1000, deadline=None)
@given(fields)
def _any_json_object(obj: dict[str, object]) -> None:
    try:
        payload = msgspec.json.encode(obj)
    except (OverflowError, msgspec.EncodeError):  # e.g. NaN keys: not a JSON document
        return
    TRIED["json"] += 1
    _check_decoded(DECODER.decode(payload, NOW_MS))


def test_any_payload_decodes_to_an_event_or_a_reason(reliability: Report) -> None:
    _any_bytes()
    _any_json_object()
    reliability(load="the decoder alone (Hypothesis)",
                bad_inputs=f"{TRIED['bytes']} random byte strings, {TRIED['json']} JSON "
                           "objects of any shape", lost=0)


def test_each_kind_of_the_catalogue_gets_its_reason() -> None:
    rng = random.Random(7)
    seen: dict[str | None, int] = {}
    for _ in range(catalogue_size(NOW_MS) * 40):
        value, reason = hostile(rng, NOW_MS)
        got = DECODER.decode(value, NOW_MS)
        assert (got.reason if isinstance(got, BadEvent) else None) == reason, value[:80]
        seen[reason] = seen.get(reason, 0) + 1
    assert len(seen) >= 10  # every reason the decoder knows, and odd good events


def _app(records: list[bytes]) -> tuple[ServeApp, FakeConsumer, FakeProducer]:
    env = {"METRICS__ENABLED": "false", "TOPICS__ACCESS_EVENTS": "events",
           "TOPICS__WARM_COMMANDS": "warm", "TOPICS__DEAD_LETTER": "dlq",
           "BATCH__MAX_BATCH": "1", "BATCH__POLL_BATCH": "1"}
    s = load_settings(None, {f"STREAM_WARMER_{k}": v for k, v in env.items()})
    log: list[str] = []
    messages = [message(i % 2, i // 2, value) for i, value in enumerate(records)]
    consumer, producer = FakeConsumer(log, messages), FakeProducer(log)
    app = ServeApp(s, tiny_lstm("fuzz"), clients=FakeClients(consumer, producer, FakeRedis(log)),
                   clock=FakeClock(step=0.001), wall_ms=lambda: NOW_MS)
    return app, consumer, producer


def test_serve_survives_any_mix_and_commits_to_the_end(reliability: Report) -> None:
    _any_mix()
    reliability(load=f"{TRIED['streams']} streams through serve's handle path (fake Kafka "
                     "and Redis, the LSTM serving; Hypothesis)",
                bad_inputs=f"{TRIED['records']} records drawn from the hostile catalogue",
                lost=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(0, 60))
def _any_mix(seed: int, good: int, bad: int) -> None:
    # the draws from the catalogue come from a seeded Random: its large blobs would
    # exceed Hypothesis's entropy budget if drawn through it
    rng = random.Random(seed)
    TRIED["streams"] += 1
    TRIED["records"] += bad
    records: list[tuple[bytes, str | None, str | None]] = []  # value, reason, warm
    for i in range(good):
        records.append((event_value("acme", str(100 + i), NOW_MS), None, str(101 + i)))
    for _ in range(bad):
        value, reason = hostile(rng, NOW_MS)
        records.append((value, reason, None))
    rng.shuffle(records)
    app, consumer, producer = _app([value for value, _r, _w in records])
    stats = app.run(max_messages=len(records))

    reasons = sorted(r for _v, r, _w in records if r is not None)
    letters = [msgspec.json.decode(v, type=DeadLetter) for _t, v, _k in producer.on("dlq")]
    assert sorted(letter.reason for letter in letters) == reasons
    assert stats.bad == len(reasons) and stats.consumed == len(records)
    ends = {p: sum(1 for i in range(len(records)) if i % 2 == p) for p in (0, 1)}
    assert consumer.committed == {p: n for p, n in ends.items() if n}
    warmed = {msgspec.json.decode(v)["key"] for _t, v, _k in producer.on("warm")}
    assert {w for _v, _r, w in records if w is not None} <= warmed
