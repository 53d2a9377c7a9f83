"""The signals transmitter's tables (SQLAlchemy Core), on their OWN ``MetaData``.

``mdm_core`` knows nothing of Shared Signals, so these are not in
``mdm_core/storage/sql/tables.py``; they live in the same database and are created by the one
Alembic chain (revision ``0008_ssf``). ``tests/contracts/test_schema.py`` compares the
migrations with this ``MetaData`` as well.

- ``ssf_streams``: one row per event stream (SSF 1.0 section 8.1.1), owned by one receiver
  (OAuth client), with its status (section 8.1.2).
- ``ssf_subjects``: subjects added to (``included``) or removed from a stream (8.1.3).
- ``ssf_deliveries``: the durable queue, one row per SET per stream, written in the same
  transaction as the state change that caused it (:mod:`posture_gateway.signals.outbox_listener`).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["metadata", "ssf_streams", "ssf_subjects", "ssf_deliveries"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


ssf_streams = Table(
    "ssf_streams",
    metadata,
    Column("stream_id", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False, index=True),
    # The receiver-supplied and transmitter-supplied configuration (events_requested, delivery
    # incl. authorization_header, description, aud, ...), as a JSON object.
    Column("config", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # enabled | paused | disabled
    Column("reason", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
)

ssf_subjects = Table(
    "ssf_subjects",
    metadata,
    Column("stream_id", String(64), primary_key=True),
    Column("subject_key", String(512), primary_key=True),  # normalised: subjects.subject_keys
    Column("subject", JSON, nullable=False),
    Column("included", Boolean, nullable=False),
    _ts("updated_at"),
)

ssf_deliveries = Table(
    "ssf_deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("stream_id", String(64), nullable=False, index=True),
    Column("jti", String(64), nullable=False, unique=True),
    Column("txn", String(64), nullable=False),  # the outbox event id (or the stream op's id)
    Column("event_type", String(160), nullable=False),
    Column("claims", JSON, nullable=False),  # the SET claims set; signed when sent
    Column("method", String(8), nullable=False),  # push | poll
    Column("state", String(12), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    _ts("next_attempt_at"),
    _ts("lease_until", nullable=True),
    _ts("created_at"),
    _ts("delivered_at", nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_ssf_deliveries_due", "state", "next_attempt_at"),
)
