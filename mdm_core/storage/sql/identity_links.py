"""SQL implementation of :class:`mdm_core.storage.identity_links.IdentityLinkStore`.

One row per link in ``identity_links``: primary key (issuer, subject), unique
(issuer, user_id). ``link`` is an ``INSERT ... ON CONFLICT DO NOTHING`` (both SQLite and
PostgreSQL), so two processes racing to make the first link of the same identity cannot both
win and neither sees a database error: the loser reads the winner's row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from mdm_core.domain.errors import Conflict
from mdm_core.storage.identity_links import MAX_ISSUER, MAX_SUBJECT, IdentityLink
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import identity_links

__all__ = ["SqlIdentityLinkStore"]


def _link(row: Row[Any]) -> IdentityLink:
    return IdentityLink(
        issuer=row.issuer,
        subject=row.subject,
        user_id=row.user_id,
        linked_at=as_utc(row.linked_at),
        method=row.method,
    )


class SqlIdentityLinkStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, issuer: str, subject: str) -> IdentityLink | None:
        row = self.conn.execute(
            select(identity_links).where(
                identity_links.c.issuer == issuer, identity_links.c.subject == subject
            )
        ).one_or_none()
        return _link(row) if row is not None else None

    def link(self, link: IdentityLink) -> bool:
        if not link.issuer or len(link.issuer) > MAX_ISSUER:
            raise ValueError(f"issuer must be 1..{MAX_ISSUER} characters")
        if not link.subject or len(link.subject) > MAX_SUBJECT:
            raise ValueError(f"subject must be 1..{MAX_SUBJECT} characters")
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        statement = (
            insert(identity_links)
            .values(
                issuer=link.issuer,
                subject=link.subject,
                user_id=link.user_id,
                linked_at=as_utc(link.linked_at),
                method=link.method,
            )
            .on_conflict_do_nothing()
            # RETURNING says whether this statement inserted (psycopg reports rowcount -1 for
            # ON CONFLICT DO NOTHING).
            .returning(identity_links.c.issuer)
        )
        if self.conn.execute(statement).first() is not None:
            return True
        existing = self.get(link.issuer, link.subject)
        if existing is not None and existing.user_id == link.user_id:
            return False
        if existing is not None:
            raise Conflict("this identity is linked to another user")
        raise Conflict("the user already has a link from this issuer")

    def for_user(self, user_id: str) -> list[IdentityLink]:
        rows = self.conn.execute(
            select(identity_links)
            .where(identity_links.c.user_id == user_id)
            .order_by(identity_links.c.issuer, identity_links.c.subject)
        )
        return [_link(r) for r in rows]

    def unlink(self, issuer: str, subject: str) -> bool:
        result = self.conn.execute(
            delete(identity_links).where(
                identity_links.c.issuer == issuer, identity_links.c.subject == subject
            )
        )
        return int(result.rowcount) > 0

    def unlink_user(self, user_id: str) -> int:
        result = self.conn.execute(
            delete(identity_links).where(identity_links.c.user_id == user_id)
        )
        return int(result.rowcount)
