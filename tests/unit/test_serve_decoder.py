"""Every bad-event class of the contract gets its own reason; good events decode."""

from __future__ import annotations

import pytest

from stream_warmer.events import AccessEvent, BadEvent, EventDecoder

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
