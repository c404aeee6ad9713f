"""Message contracts: access events in, warm commands and dead letters out.

Decoding is typed (msgspec) on the hot path; a bad payload becomes a ``BadEvent``
value with a reason, never an exception in the consume loop. What a tenant may be
and what counts as a numeric key are defined here once (``valid_tenant``,
``is_ascii_digits``) and used by the decoder, the Redis sink and the models.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import msgspec

Op = Literal["get", "set", "del"]
# always with fullmatch: "$" would also match before a trailing newline ("acme\n")
_TENANT_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# epoch ms beyond year 9999 is certainly wrong; negative times are accepted by
# nothing that produces real events.
MAX_TS_MS = 253_402_300_799_999


class AccessEvent(msgspec.Struct, frozen=True, gc=False):
    """One cache access by one tenant (the value of an ``access-events`` record)."""

    tenant: str
    key: str
    ts: int
    op: Op = "get"
    size: int | None = None


class WarmCommand(msgspec.Struct, frozen=True, gc=False):
    """Warm ``key`` for ``tenant``; written to Redis and to ``warm-commands``."""

    tenant: str
    key: str
    score: float
    strategy: str
    model_version: str
    source: str
    issued_at: int
    expires_at: int


def valid_tenant(tenant: str) -> bool:
    """Whether ``tenant`` is 1-64 of ``[A-Za-z0-9._-]``, all of it (no newline either)."""
    return _TENANT_RE.fullmatch(tenant) is not None


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits: the only digits keys are read as.

    ``str.isdigit`` is also true of "²" (``int`` then raises) and of "١٢" (which
    ``int`` reads as 12, aliasing key "12").
    """
    return text.isascii() and text.isdigit()


class DeadLetter(msgspec.Struct, frozen=True):
    """A bad event as it goes to the dead-letter topic: the reason and where it was.

    ``original`` is the record's value, or only its first bytes when ``truncated``
    (a dead letter never exceeds ``events.dead_letter_max_bytes``; when even that is
    refused, a minimal letter with an empty ``original`` goes instead);
    ``original_size`` and ``original_sha256`` are those of the whole value.
    """

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    original: bytes
    original_size: int = 0
    original_sha256: str = ""
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class BadEvent:
    """Why a payload was rejected: ``reason`` is a short stable label for metrics."""

    reason: str
    detail: str


class _RawEvent(msgspec.Struct, frozen=True, gc=False):
    # ts is decoded as float|int so that a non-finite or fractional value gets its
    # own reason instead of a generic type error.
    tenant: str
    key: str
    ts: int | float
    op: Op = "get"
    size: int | None = None


_fast = msgspec.json.Decoder(AccessEvent)
_decoder = msgspec.json.Decoder(_RawEvent)
_encoder = msgspec.json.Encoder()


class EventDecoder:
    """Decode and validate access events per the contract (DESIGN §2).

    Hot path: decode straight into ``AccessEvent`` (one allocation) and check the
    few rules msgspec cannot express; only a payload that fails the typed decode is
    decoded again, loosely, to name the reason.

    Given the consumer's clock (``now_ms``), an event whose ``ts`` is more than
    ``future_tolerance_ms`` ahead of it is rejected as ``future_ts`` rather than
    clamped: a clamped ts is a time that never happened, fed silently to the
    staleness check, the latency metric and the models' inter-arrival features,
    while a rejected one is counted per reason and kept in the DLQ, where the skewed
    producer shows and its events can be replayed once its clock is fixed. The
    tolerance absorbs ordinary clock skew, so such events never give negative
    latencies beyond it.
    """

    def __init__(self, max_key_bytes: int = 512, future_tolerance_ms: int = 300_000) -> None:
        if max_key_bytes < 1 or future_tolerance_ms < 0:
            msg = (f"need max_key_bytes >= 1 and future_tolerance_ms >= 0, got "
                   f"max_key_bytes={max_key_bytes} future_tolerance_ms={future_tolerance_ms}")
            raise ValueError(msg)
        self._max_key_bytes = max_key_bytes
        self._tolerance_ms = future_tolerance_ms
        # a key of at most this many characters fits in max_key_bytes whatever it holds
        self._safe_chars = max_key_bytes // 4

    def decode(self, payload: bytes | None, now_ms: int | None = None) -> AccessEvent | BadEvent:
        """Return the event, or a ``BadEvent`` naming what is wrong with it.

        ``now_ms`` is the consumer's wall clock (epoch ms); without it ``ts`` is not
        compared with the present.
        """
        if not payload:
            return BadEvent("empty", "record has no value")
        max_ts = MAX_TS_MS if now_ms is None else min(MAX_TS_MS, now_ms + self._tolerance_ms)
        try:
            event = _fast.decode(payload)
        except msgspec.DecodeError:  # ValidationError included
            return self._slow(payload, max_ts)
        key = event.key
        if (
            valid_tenant(event.tenant)
            and key
            and (len(key) <= self._safe_chars or len(key.encode()) <= self._max_key_bytes)
            and 0 <= event.ts <= max_ts
            and (event.size is None or event.size >= 0)
        ):
            return event
        raw = _RawEvent(event.tenant, key, event.ts, event.op, event.size)
        return self._validate(raw, max_ts)

    def _slow(self, payload: bytes, max_ts: int) -> AccessEvent | BadEvent:
        try:
            raw = _decoder.decode(payload)
        except msgspec.ValidationError as exc:
            detail = str(exc)
            # 1e400 and friends overflow in the decoder: a non-finite timestamp
            reason = "bad_ts" if detail.endswith("at `$.ts`") else "schema"
            return BadEvent(reason, detail)
        except msgspec.DecodeError as exc:
            return BadEvent("not_json", str(exc))
        return self._validate(raw, max_ts)

    def _validate(self, raw: _RawEvent, max_ts: int) -> AccessEvent | BadEvent:
        if not valid_tenant(raw.tenant):
            return BadEvent(
                "bad_tenant", f"tenant {raw.tenant[:80]!r} is not 1-64 of [A-Za-z0-9._-]"
            )
        if not raw.key:
            return BadEvent("bad_key", "key is empty")
        if len(raw.key.encode()) > self._max_key_bytes:
            return BadEvent("key_too_long", f"key is over {self._max_key_bytes} bytes")
        ts = raw.ts
        if isinstance(ts, float):
            if not math.isfinite(ts) or not ts.is_integer():
                return BadEvent("bad_ts", f"ts {ts!r} is not a finite integer of epoch ms")
            ts = int(ts)
        if not 0 <= ts <= MAX_TS_MS:
            return BadEvent("bad_ts", f"ts {ts} is out of range")
        if ts > max_ts:
            ahead = ts - max_ts + self._tolerance_ms
            return BadEvent("future_ts", f"ts {ts} is {ahead} ms ahead of the consumer's "
                                         f"clock (tolerance {self._tolerance_ms} ms)")
        if raw.size is not None and raw.size < 0:
            return BadEvent("bad_size", f"size {raw.size} is negative")
        return AccessEvent(raw.tenant, raw.key, ts, raw.op, raw.size)


def encode(obj: AccessEvent | WarmCommand | DeadLetter) -> bytes:
    """JSON bytes of a contract message (dead letters carry base64 of the original)."""
    return _encoder.encode(obj)
