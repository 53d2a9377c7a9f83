"""Value encoding shared by the SQL stores: pre-encoded JSON parameters and UTC timestamps.

JSON that the hot path has already encoded (a posture is encoded once and written to two
tables) is bound as text: on PostgreSQL it is cast to ``json``; SQLite stores JSON as text
anyway. SQLite hands timestamps back without a zone; they were written in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BindParameter, ColumnElement, Text, bindparam, cast

__all__ = ["json_param", "as_utc"]


def json_param(name: str, dialect: str) -> ColumnElement[object] | BindParameter[str]:
    """A bind parameter ``name`` taking already-encoded JSON text, for a JSON column."""
    param = bindparam(name, type_=Text)
    if dialect == "postgresql":
        return cast(param, JSON)
    return param


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values from SQLite are UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
