"""HMAC-SHA256 over body || timestamp: the right signature passes, everything else is a 401
with a precise code, and the clock window is enforced both ways."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from posture_gateway.hr.errors import HrError
from posture_gateway.hr.signature import sign, verify

KEY = b"bamboo-private-key-0123456789"
BODY = b'{"employees": [{"id": "7", "fields": {}}]}'
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))


def _verify(signature: str | None, timestamp: str | None, body: bytes = BODY) -> datetime:
    return verify(
        KEY,
        body,
        signature=signature,
        timestamp=timestamp,
        now=NOW,
        max_age=timedelta(minutes=5),
        future_leeway=timedelta(seconds=60),
    )


def test_sign_is_hmac_sha256_hex_over_body_then_timestamp() -> None:
    expected = hmac.new(KEY, BODY + TS.encode(), hashlib.sha256).hexdigest()
    assert sign(KEY, BODY, TS) == expected
    assert _verify(expected, TS) == NOW
    assert _verify(expected.upper(), TS) == NOW  # hex is case-insensitive


def _code(signature: str | None, timestamp: str | None, body: bytes = BODY) -> str:
    with pytest.raises(HrError) as caught:
        _verify(signature, timestamp, body)
    assert caught.value.status == 401
    return caught.value.code


def test_refusals() -> None:
    good = sign(KEY, BODY, TS)
    assert _code(None, TS) == "missing_signature"
    assert _code(good, None) == "missing_signature"
    assert _code("", TS) == "missing_signature"
    assert _code(good, "12.5") == "invalid_timestamp"
    assert _code(good, "-1") == "invalid_timestamp"
    assert _code(good, "9" * 12) == "invalid_timestamp"  # neither seconds nor milliseconds
    assert _code(good, "9" * 14) == "invalid_timestamp"
    assert _code(good, "2026-12-01T12:00:00") == "invalid_timestamp"  # no offset: whose noon?
    assert _code(good, "2026-13-01T12:00:00Z") == "invalid_timestamp"
    assert _code(good, "2026-12-01 12:00:00Z") == "invalid_timestamp"
    assert _code(good, " " + TS) == "invalid_timestamp"
    assert _code(good, TS + "\n") == "invalid_timestamp"
    assert _code(good[:40], TS) == "invalid_signature"  # sha1 length
    assert _code("z" * 64, TS) == "invalid_signature"  # not hex
    assert _code("sha256=" + good, TS) == "invalid_signature"
    assert _code(good, TS, BODY + b" ") == "invalid_signature"  # another body
    assert _code(sign(b"another-secret-0123456789", BODY, TS), TS) == "invalid_signature"
    # the timestamp is signed: moving it breaks the signature
    assert _code(good, str(int(TS) + 1)) == "invalid_signature"


def test_the_window() -> None:
    old = str(int(NOW.timestamp()) - 301)
    assert _code(sign(KEY, BODY, old), old) == "stale_timestamp"
    edge = str(int(NOW.timestamp()) - 300)
    assert _verify(sign(KEY, BODY, edge), edge)
    ahead = str(int(NOW.timestamp()) + 61)
    assert _code(sign(KEY, BODY, ahead), ahead) == "future_timestamp"
    far = "9" * 11
    assert _code(sign(KEY, BODY, far), far) == "future_timestamp"
    zero = "0"
    assert _code(sign(KEY, BODY, zero), zero) == "stale_timestamp"


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: str(int(t.timestamp())),
        lambda t: str(int(t.timestamp() * 1000)),
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        lambda t: t.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        lambda t: t.isoformat(timespec="milliseconds"),
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S+0000"),  # as in BambooHR's payload
    ],
    ids=["seconds", "milliseconds", "iso-z", "iso-offset", "iso-fraction", "iso-bamboohr"],
)
def test_every_unambiguous_timestamp_encoding_gets_the_same_window(encode) -> None:
    """BambooHR does not say how it writes the timestamp: whichever it is, 5 minutes old is
    accepted, 5 minutes and 2 seconds is stale, and the value is still what is signed."""
    edge, stale = encode(NOW - timedelta(seconds=299)), encode(NOW - timedelta(seconds=302))
    assert abs(_verify(sign(KEY, BODY, edge), edge) - (NOW - timedelta(seconds=299))) < timedelta(
        seconds=1
    )
    assert _code(sign(KEY, BODY, stale), stale) == "stale_timestamp"
    assert _code(sign(KEY, BODY, edge), stale) == "invalid_signature"
