"""SQL implementation of :class:`mdm_core.storage.replay.ReplayStore` (``used_proofs``).

``remember`` is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: the primary key on
``jti`` decides, so of two concurrent inserts exactly one returns a row (PostgreSQL makes the
second wait for the first to commit, then skip).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete
from sqlalchemy.dialects import postgresql, sqlite

from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import used_proofs

__all__ = ["SqlReplayStore"]

# RETURNING tells whether this statement inserted the row (psycopg reports rowcount -1 for
# INSERT ... ON CONFLICT DO NOTHING, so rowcount cannot be trusted across drivers).
_INSERT_PG = (
    postgresql.insert(used_proofs)
    .on_conflict_do_nothing(index_elements=["jti"])
    .returning(used_proofs.c.jti)
)
_INSERT_SQLITE = (
    sqlite.insert(used_proofs)
    .on_conflict_do_nothing(index_elements=["jti"])
    .returning(used_proofs.c.jti)
)


class SqlReplayStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self._insert = _INSERT_PG if dialect == "postgresql" else _INSERT_SQLITE

    def remember(self, jti: str, expires_at: datetime) -> bool:
        result = self.conn.execute(self._insert, {"jti": jti, "expires_at": as_utc(expires_at)})
        return result.first() is not None

    def purge_expired(self, now: datetime) -> int:
        result = self.conn.execute(
            delete(used_proofs).where(used_proofs.c.expires_at < as_utc(now))
        )
        return int(result.rowcount)
