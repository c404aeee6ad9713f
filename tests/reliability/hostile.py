"""Hostile access events for the reliability suite: each with the reason it must get.

``hostile(rng, now_ms)`` draws one record value from a catalogue of ways to break
(or barely keep) the event contract of DESIGN §2, and says what serve must do with
it: the dead-letter reason, or ``None`` when the event keeps the contract however
odd it looks (it must then be served like any other). One catalogue, used by the
property-based tests and by the 10,000-event run on the real stack.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from stream_warmer.events import MAX_TS_MS

Hostile = tuple[bytes, str | None]  # (record value, dead-letter reason or None)
MAX_KEY_BYTES = 512  # events.max_key_bytes, the default
FUTURE_TOLERANCE_MS = 300_000  # events.future_ts_tolerance_ms, the default


def _json(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


def _kinds(now: int) -> list[Callable[[random.Random], Hostile]]:
    good_tenant, ts = "acme", now
    return [
        # not JSON at all: random bytes, truncated JSON, a large binary blob
        lambda r: (b"\x00" + r.randbytes(r.randint(1, 64)), "not_json"),
        lambda r: (_json(tenant="acme", key="1", ts=ts)[: r.randint(1, 20)], "not_json"),
        lambda r: (b"\xff" + r.randbytes(r.randint(100_000, 300_000)), "not_json"),
        lambda r: (b"", "empty"),
        # JSON of the wrong shape
        lambda r: (_json(tenant="acme", ts=ts), "schema"),
        lambda r: (_json(tenant=7, key="1", ts=ts), "schema"),
        lambda r: (_json(tenant="acme", key=["1"], ts=ts), "schema"),
        lambda r: (_json(tenant="acme", key="1", ts=ts, op="drop"), "schema"),
        lambda r: (b"[1, 2, 3]", "schema"),
        lambda r: (b"null", "schema"),
        # tenants a Redis key must never be built from
        lambda r: (_json(tenant="acme\n", key="1", ts=ts), "bad_tenant"),
        lambda r: (_json(tenant="a:b", key="1", ts=ts), "bad_tenant"),
        lambda r: (_json(tenant="", key="1", ts=ts), "bad_tenant"),
        lambda r: (_json(tenant="t" * 65, key="1", ts=ts), "bad_tenant"),
        lambda r: (_json(tenant="tenánt", key="1", ts=ts), "bad_tenant"),
        lambda r: (_json(tenant="sw*", key="1", ts=ts), "bad_tenant"),
        # keys
        lambda r: (_json(tenant=good_tenant, key="", ts=ts), "bad_key"),
        lambda r: (_json(tenant=good_tenant, key="é" * (MAX_KEY_BYTES // 2 + 1), ts=ts),
                   "key_too_long"),
        # times
        lambda r: (_json(tenant=good_tenant, key="1", ts=-1), "bad_ts"),
        lambda r: (_json(tenant=good_tenant, key="1", ts=ts + 0.5), "bad_ts"),
        lambda r: (_json(tenant=good_tenant, key="1", ts=MAX_TS_MS + 1), "bad_ts"),
        lambda r: (b'{"tenant": "acme", "key": "1", "ts": 1e400}', "bad_ts"),
        lambda r: (_json(tenant=good_tenant, key="1",
                         ts=now + FUTURE_TOLERANCE_MS + r.randint(60_000, 10**9)), "future_ts"),
        lambda r: (_json(tenant=good_tenant, key="1", ts=ts, size=-r.randint(1, 99)),
                   "bad_size"),
        # odd but within the contract: served, never dead-lettered
        lambda r: (_json(tenant="odd", key="²", ts=ts), None),
        lambda r: (_json(tenant="odd", key="١٢", ts=ts), None),
        lambda r: (_json(tenant="odd", key="a:b c\n", ts=ts), None),
        lambda r: (_json(tenant="odd", key="ключ-" + str(r.randint(0, 9)), ts=ts), None),
        lambda r: (_json(tenant="odd", key="9" * 400, ts=ts), None),
        lambda r: (_json(tenant="odd", key="-5", ts=ts, op="del", size=0), None),
        lambda r: (_json(tenant="odd", key="1", ts=ts, extra={"nested": [1, 2]}), None),
    ]


def hostile(rng: random.Random, now_ms: int) -> Hostile:
    """One hostile record value and the reason serve must dead-letter it with."""
    kinds = _kinds(now_ms)
    return kinds[rng.randrange(len(kinds))](rng)


def catalogue_size(now_ms: int) -> int:
    """How many kinds there are (a run of many draws covers each)."""
    return len(_kinds(now_ms))
