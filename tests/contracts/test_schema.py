"""The Alembic migrations create exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import metadata


def test_migrations_match_tables(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_is_idempotent(database: Database) -> None:
    from alembic.script import ScriptDirectory

    database.migrate()
    head = ScriptDirectory.from_config(database.alembic_config()).get_current_head()
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert head is not None and ctx.get_current_revision() == head
