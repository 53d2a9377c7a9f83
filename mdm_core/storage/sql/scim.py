"""SQL implementation of :class:`mdm_core.storage.scim.ScimResourceStore` (``scim_resources``).

A replace is an ``UPDATE ... WHERE version = :expected``: of two writers that read the same
version, exactly one updates a row, the other gets :class:`~mdm_core.domain.errors.Conflict`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import Conflict
from mdm_core.storage.scim import ScimResource
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import scim_resources

__all__ = ["SqlScimResourceStore"]

_T = scim_resources.c

# The statements of a PATCH (read, versioned replace), built once: building a statement
# costs more CPU than PostgreSQL takes to run it.
_GET = select(scim_resources).where(
    and_(_T.resource_type == bindparam("rt"), _T.id == bindparam("rid"))
)
_REPLACE = (
    update(scim_resources)
    .where(
        and_(
            _T.resource_type == bindparam("rt"),
            _T.id == bindparam("rid"),
            _T.version == bindparam("expected"),
        )
    )
    .values(
        client=bindparam("client"),
        name_key=bindparam("name_key"),
        external_id=bindparam("external_id"),
        version=bindparam("version"),
        created=bindparam("created"),
        last_modified=bindparam("last_modified"),
        document=bindparam("document"),
    )
)


def _resource(row: Row[Any]) -> ScimResource:
    return ScimResource(
        resource_type=row.resource_type,
        id=row.id,
        client=row.client,
        name_key=row.name_key,
        external_id=row.external_id,
        version=int(row.version),
        created=as_utc(row.created),
        last_modified=as_utc(row.last_modified),
        document=dict(row.document),
    )


class SqlScimResourceStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, resource_type: str, resource_id: str) -> ScimResource | None:
        row = self.conn.execute(_GET, {"rt": resource_type, "rid": resource_id}).one_or_none()
        return _resource(row) if row is not None else None

    def find_by_name(self, resource_type: str, name_key: str) -> ScimResource | None:
        row = self.conn.execute(
            select(scim_resources).where(
                and_(_T.resource_type == resource_type, _T.name_key == name_key)
            )
        ).one_or_none()
        return _resource(row) if row is not None else None

    def put(self, resource: ScimResource, *, expected_version: int | None) -> None:
        values = {
            "client": resource.client,
            "name_key": resource.name_key,
            "external_id": resource.external_id,
            "version": resource.version,
            "created": as_utc(resource.created),
            "last_modified": as_utc(resource.last_modified),
            "document": resource.document,
        }
        try:
            if expected_version is None:
                self.conn.execute(
                    insert(scim_resources).values(
                        resource_type=resource.resource_type, id=resource.id, **values
                    )
                )
                return
            result = self.conn.execute(
                _REPLACE,
                {
                    "rt": resource.resource_type,
                    "rid": resource.id,
                    "expected": expected_version,
                    **values,
                },
            )
        except IntegrityError as exc:
            raise Conflict(
                f"{resource.resource_type} {resource.name_key!r} already exists"
            ) from exc
        if result.rowcount != 1:
            raise Conflict(f"{resource.resource_type} {resource.id!r} changed meanwhile")

    def delete(self, resource_type: str, resource_id: str) -> bool:
        result = self.conn.execute(
            delete(scim_resources).where(
                and_(_T.resource_type == resource_type, _T.id == resource_id)
            )
        )
        return result.rowcount > 0

    def list(self, resource_type: str, client: str) -> list[ScimResource]:
        rows = self.conn.execute(
            select(scim_resources)
            .where(and_(_T.resource_type == resource_type, _T.client == client))
            .order_by(_T.id)
        )
        return [_resource(r) for r in rows]
