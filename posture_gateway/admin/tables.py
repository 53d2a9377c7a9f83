"""The named admins' table (SQLAlchemy Core), on the gateway's OWN ``MetaData``.

``mdm_core`` knows nothing of gateway admins, so this is not in
``mdm_core/storage/sql/tables.py``; it lives in the same database and is created by the one
Alembic chain (revision ``0010_admins``). ``tests/contracts/test_schema.py`` compares the
migrations with this ``MetaData`` as well.

- ``admins``: one row per named admin: role, the CURRENT API token's public id and the
  SHA-256 of its secret (never the secret), when it was disabled, when it was last used.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table

__all__ = ["metadata", "admins"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


admins = Table(
    "admins",
    metadata,
    Column("name", String(64), primary_key=True),  # ^[a-z0-9][a-z0-9._-]{0,63}$
    Column("role", String(16), nullable=False),  # helpdesk | admin (principals.Role)
    Column("token_id", String(32), nullable=False, unique=True),  # the token's public part
    Column("token_hash", String(64), nullable=False),  # hex SHA-256 of the secret part
    Column("created_by", String(160), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("token_issued_at"),
    _ts("disabled_at", nullable=True),
    _ts("last_used_at", nullable=True),
)
