"""Small SAML value types: message IDs and ``xs:dateTime`` instants (SAML core §1.3.3, §1.3.4).

IDs are ``_`` + 40 hex digits (160 random bits; an xs:ID must be an NCName, so it cannot start
with a digit). Instants are written in UTC with a ``Z`` and no fractional seconds, and read
strictly: a time zone is required (SAML instants are UTC), fractions are cut to microseconds.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from .errors import MessageError

__all__ = ["new_id", "saml_datetime", "parse_saml_datetime", "parse_index"]

_INDEX = re.compile(r"^[0-9]{1,5}$")

_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def new_id() -> str:
    """A fresh, unguessable SAML ID (160 random bits)."""
    return "_" + secrets.token_hex(20)


def saml_datetime(instant: datetime) -> str:
    """``instant`` as SAML writes it: ``2026-12-01T19:00:00Z`` (UTC; naive means UTC)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_saml_datetime(text: str | None, *, what: str) -> datetime:
    """Read an ``xs:dateTime`` with a time zone; raises :class:`MessageError` otherwise."""
    if text is None:
        raise MessageError(f"{what} is missing")
    match = _DATETIME.match(text.strip())
    if not match:
        raise MessageError(f"{what} {text[:40]!r} is not a UTC xs:dateTime")
    base, fraction, zone = match.groups()
    value = base + ("." + (fraction + "000000")[:6] if fraction else "")
    value += "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MessageError(f"{what} {text[:40]!r} is not a valid date and time") from exc


def parse_index(text: str, *, what: str) -> int:
    """An ``xs:unsignedShort`` index, ASCII digits only (``int()`` would also take ``+1``,
    ``1_0`` and non-ASCII digits); raises :class:`MessageError`."""
    value = text.strip()
    if not _INDEX.match(value) or int(value) > 65535:
        raise MessageError(f"{what} {text[:20]!r} is not an index (0-65535)")
    return int(value)
