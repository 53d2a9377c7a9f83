"""SQL implementation of :class:`mdm_core.storage.directory_claims.SourceClaimStore`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import directory_source_claims as claims_table

__all__ = ["SqlSourceClaimStore"]


class SqlSourceClaimStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def put(self, user_id: str, source: str, claims: Mapping[str, Any], *, at: datetime) -> bool:
        wanted = dict(claims)
        row = self.conn.execute(
            select(claims_table.c.claims).where(
                claims_table.c.user_id == user_id, claims_table.c.source == source
            )
        ).one_or_none()
        if row is not None and row.claims == wanted:
            return False
        values = {"claims": wanted, "updated_at": as_utc(at)}
        if row is None:
            self.conn.execute(insert(claims_table).values(user_id=user_id, source=source, **values))
        else:
            self.conn.execute(
                update(claims_table)
                .where(claims_table.c.user_id == user_id, claims_table.c.source == source)
                .values(**values)
            )
        return True

    def claimed(self, user_ids: Collection[str]) -> set[str]:
        ids = sorted(set(user_ids))
        out: set[str] = set()
        for i in range(0, len(ids), 500):
            rows = self.conn.execute(
                select(claims_table.c.user_id).where(claims_table.c.user_id.in_(ids[i : i + 500]))
            )
            out.update(r.user_id for r in rows)
        return out

    def put_new(
        self, source: str, claims: Mapping[str, Mapping[str, Any]], *, at: datetime
    ) -> None:
        if not claims:
            return
        self.conn.execute(
            insert(claims_table),
            [
                {"user_id": u, "source": source, "claims": dict(c), "updated_at": as_utc(at)}
                for u, c in claims.items()
            ],
        )

    def for_user(self, user_id: str) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(
            select(claims_table.c.source, claims_table.c.claims).where(
                claims_table.c.user_id == user_id
            )
        )
        return {r.source: dict(r.claims) for r in rows}

    def remove(self, user_id: str, source: str) -> bool:
        result = self.conn.execute(
            delete(claims_table).where(
                claims_table.c.user_id == user_id, claims_table.c.source == source
            )
        )
        return result.rowcount > 0

    def users(self, source: str) -> list[str]:
        rows = self.conn.execute(
            select(claims_table.c.user_id)
            .where(claims_table.c.source == source)
            .order_by(claims_table.c.user_id)
        )
        return [r.user_id for r in rows]
