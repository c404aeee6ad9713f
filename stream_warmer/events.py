"""Message contracts: access events in, warm commands and dead letters out.

Decoding is typed (msgspec) on the hot path; a bad payload becomes a ``BadEvent``
value with a reason, never an exception in the consume loop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import msgspec

Op = Literal["get", "set", "del"]
TENANT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
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


class DeadLetter(msgspec.Struct, frozen=True):
    """A bad event as it goes to the dead-letter topic: original bytes and the reason."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    original: bytes


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
    """

    def __init__(self, max_key_bytes: int = 512) -> None:
        if max_key_bytes < 1:
            msg = f"max_key_bytes must be >= 1, got {max_key_bytes}"
            raise ValueError(msg)
        self._max_key_bytes = max_key_bytes
        # a key of at most this many characters fits in max_key_bytes whatever it holds
        self._safe_chars = max_key_bytes // 4

    def decode(self, payload: bytes | None) -> AccessEvent | BadEvent:
        """Return the event, or a ``BadEvent`` naming what is wrong with it."""
        if not payload:
            return BadEvent("empty", "record has no value")
        try:
            event = _fast.decode(payload)
        except msgspec.DecodeError:  # ValidationError included
            return self._slow(payload)
        key = event.key
        if (
            TENANT_RE.match(event.tenant) is not None
            and key
            and (len(key) <= self._safe_chars or len(key.encode()) <= self._max_key_bytes)
            and 0 <= event.ts <= MAX_TS_MS
            and (event.size is None or event.size >= 0)
        ):
            return event
        return self._validate(_RawEvent(event.tenant, key, event.ts, event.op, event.size))

    def _slow(self, payload: bytes) -> AccessEvent | BadEvent:
        try:
            raw = _decoder.decode(payload)
        except msgspec.ValidationError as exc:
            detail = str(exc)
            # 1e400 and friends overflow in the decoder: a non-finite timestamp
            reason = "bad_ts" if detail.endswith("at `$.ts`") else "schema"
            return BadEvent(reason, detail)
        except msgspec.DecodeError as exc:
            return BadEvent("not_json", str(exc))
        return self._validate(raw)

    def _validate(self, raw: _RawEvent) -> AccessEvent | BadEvent:
        if not TENANT_RE.match(raw.tenant):
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
        if raw.size is not None and raw.size < 0:
            return BadEvent("bad_size", f"size {raw.size} is negative")
        return AccessEvent(raw.tenant, raw.key, ts, raw.op, raw.size)


def encode(obj: AccessEvent | WarmCommand | DeadLetter) -> bytes:
    """JSON bytes of a contract message (dead letters carry base64 of the original)."""
    return _encoder.encode(obj)
