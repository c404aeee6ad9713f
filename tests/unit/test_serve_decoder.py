"""Every bad-event class of the contract gets its own reason; good events decode."""

from __future__ import annotations

import msgspec
import pytest

from stream_warmer.events import (
    AccessEvent,
    BadEvent,
    EventDecoder,
    is_ascii_digits,
    valid_tenant,
)

GOOD = (b'{"tenant": "acme", "key": "user:42:profile", "ts": 1732612345123, "op": "get", '
        b'"size": 512}')


def test_a_good_event_decodes_with_defaults() -> None:
    assert EventDecoder().decode(GOOD) == AccessEvent("acme", "user:42:profile", 1732612345123,
                                                      "get", 512)
    minimal = EventDecoder().decode(b'{"tenant": "a", "key": "k", "ts": 7}')
    assert minimal == AccessEvent("a", "k", 7, "get", None)


@pytest.mark.parametrize(("payload", "reason"), [
    (None, "empty"),
    (b"", "empty"),
    (b"{not json", "not_json"),
    (b"\xff\xfe", "not_json"),
    (b"[1, 2]", "schema"),
    (b'{"tenant": "acme", "ts": 1}', "schema"),                       # key missing
    (b'{"key": "k", "ts": 1}', "schema"),                             # tenant missing
    (b'{"tenant": "acme", "key": "k"}', "schema"),                    # ts missing
    (b'{"tenant": "acme", "key": 42, "ts": 1}', "schema"),            # wrong type
    (b'{"tenant": 7, "key": "k", "ts": 1}', "schema"),
    (b'{"tenant": "acme", "key": "k", "ts": 1, "op": "put"}', "schema"),
    (b'{"tenant": "acme", "key": "k", "ts": 1, "size": "big"}', "schema"),
    (b'{"tenant": "bad tenant", "key": "k", "ts": 1}', "bad_tenant"),
    (b'{"tenant": "", "key": "k", "ts": 1}', "bad_tenant"),
    (b'{"tenant": "' + b"t" * 65 + b'", "key": "k", "ts": 1}', "bad_tenant"),
    (b'{"tenant": "a:b", "key": "k", "ts": 1}', "bad_tenant"),
    (b'{"tenant": "acme", "key": "", "ts": 1}', "bad_key"),
    (b'{"tenant": "acme", "key": "' + b"k" * 513 + b'", "ts": 1}', "key_too_long"),
    (b'{"tenant": "acme", "key": "k", "ts": 1, "size": -1}', "bad_size"),
    (b'{"tenant": "acme", "key": "k", "ts": 1e400}', "bad_ts"),       # non-finite
    (b'{"tenant": "acme", "key": "k", "ts": 1.5}', "bad_ts"),
    (b'{"tenant": "acme", "key": "k", "ts": -1}', "bad_ts"),
    (b'{"tenant": "acme", "key": "k", "ts": 1e30}', "bad_ts"),
])
def test_every_bad_class_has_its_reason(payload: bytes | None, reason: str) -> None:
    result = EventDecoder().decode(payload)
    assert isinstance(result, BadEvent)
    assert result.reason == reason
    assert result.detail


def test_the_key_limit_counts_bytes_not_characters() -> None:
    decoder = EventDecoder(max_key_bytes=4)
    assert isinstance(decoder.decode(b'{"tenant": "a", "key": "abcd", "ts": 1}'), AccessEvent)
    two_byte = '{"tenant": "a", "key": "\u00e9\u00e9\u00e9", "ts": 1}'.encode()
    assert decoder.decode(two_byte) == BadEvent("key_too_long", "key is over 4 bytes")


@pytest.mark.parametrize("tenant", ["acme\n", "acme\r\n", "\nacme", "ac\nme"])
def test_a_tenant_with_a_newline_is_rejected(tenant: str) -> None:
    # re.match with "$" let "acme\n" through: Redis key sw:acme\n:queue (issue 13)
    payload = msgspec.json.encode({"tenant": tenant, "key": "k", "ts": 1})
    result = EventDecoder().decode(payload)
    assert isinstance(result, BadEvent) and result.reason == "bad_tenant"
    assert not valid_tenant(tenant)


def test_one_tenant_rule() -> None:
    assert valid_tenant("acme") and valid_tenant("A.b_c-9") and valid_tenant("t" * 64)
    assert not any(valid_tenant(t) for t in ["", "t" * 65, "a:b", "a b", "ä", "acme\n"])


@pytest.mark.parametrize(("text", "numeric"), [
    ("0", True), ("12", True), ("007", True), ("", False), ("-1", False), ("1_000", False),
    (" 1", False), ("1\n", False), ("²", False), ("١٢", False), ("\uff11\uff12", False),
    ("12a", False),
])
def test_a_numeric_key_is_ascii_digits_only(text: str, numeric: bool) -> None:
    assert is_ascii_digits(text) is numeric


NOW = 1_800_000_000_000


def test_an_event_too_far_ahead_of_the_clock_is_a_future_ts() -> None:
    decoder = EventDecoder(future_tolerance_ms=300_000)
    ahead = msgspec.json.encode({"tenant": "a", "key": "k", "ts": NOW + 300_001})
    result = decoder.decode(ahead, now_ms=NOW)
    assert isinstance(result, BadEvent) and result.reason == "future_ts"
    assert "300001 ms ahead" in result.detail
    within = msgspec.json.encode({"tenant": "a", "key": "k", "ts": NOW + 300_000})
    assert decoder.decode(within, now_ms=NOW) == AccessEvent("a", "k", NOW + 300_000)
    assert decoder.decode(ahead) == AccessEvent("a", "k", NOW + 300_001)  # no clock, no check
    # the loose path (a float ts) applies the same rule
    loose = msgspec.json.encode({"tenant": "a", "key": "k", "ts": float(NOW + 10**9)})
    assert decoder.decode(loose, now_ms=NOW) == BadEvent(
        "future_ts", f"ts {NOW + 10**9} is 1000000000 ms ahead of the consumer's clock "
        "(tolerance 300000 ms)")
