"""The HR webhooks' table (SQLAlchemy Core), on its OWN ``MetaData``.

``mdm_core`` knows nothing of HR systems, so this is not in ``mdm_core/storage/sql/tables.py``;
it lives in the same database, created by the one Alembic chain (revision
``0013_hr_deliveries``; ``tests/contracts/test_schema.py`` compares them).

``hr_deliveries``: one row per employee event of an accepted delivery, keyed by
``(source, delivery_key, seq)``: BambooHR's ``delivery_key`` is the SHA-256 of the raw body
(a redelivered body is the same delivery), the generic shape's is its ``event_id``; ``seq``
is the employee's index in the body. Written in the same transaction as the offboarding it
requested, so a delivery is either recorded with its effect or not at all.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, MetaData, String, Table

__all__ = ["metadata", "hr_deliveries"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

hr_deliveries = Table(
    "hr_deliveries",
    metadata,
    Column("source", String(16), primary_key=True),  # bamboohr | generic
    Column("delivery_key", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("body_sha256", String(64), nullable=False),
    Column("employee_ref", String(400), nullable=False),
    Column("user_id", String(255), nullable=True),  # the matched directory user
    Column("event", String(16), nullable=False),  # offboard | cancel | ignore | invalid
    Column("outcome", String(32), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("source_ref", String(255), nullable=True),
    Column("effective_at", DateTime(timezone=True), nullable=True),
    Column("detail", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_hr_deliveries_outcome", "outcome", "received_at"),
    Index("ix_hr_deliveries_received", "received_at"),
)
