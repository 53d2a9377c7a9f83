"""The Alembic migrations create exactly the schema the code declares, on both backends:
the core's tables and the gateway's own (OIDC grants, nonces, login transactions)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import metadata
from posture_gateway.admin.tables import metadata as admin_metadata
from posture_gateway.oidc.tables import metadata as gateway_metadata
from posture_gateway.signals.tables import metadata as signals_metadata


def test_migrations_match_tables(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn),
            [metadata, gateway_metadata, signals_metadata, admin_metadata],
        )
    assert diff == []


def test_gateway_tables_come_from_the_migrations(database: Database) -> None:
    """Every gateway table exists after ``migrate`` alone (the gateway creates none)."""
    tables = set(inspect(database.engine).get_table_names())
    assert set(gateway_metadata.tables) <= tables
    assert set(metadata.tables) <= tables
    assert set(signals_metadata.tables) <= tables
    assert set(admin_metadata.tables) <= tables


def test_migrate_keeps_gateway_tables_created_earlier(tmp_path: Path) -> None:
    """A database whose gateway tables an earlier release made with ``create_all`` upgrades."""
    db = Database(f"sqlite:///{tmp_path}/old.sqlite3")
    try:
        gateway_metadata.create_all(db.engine)
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn),
                [metadata, gateway_metadata, signals_metadata, admin_metadata],
            )
        assert diff == []
    finally:
        db.dispose()


def test_migrate_is_idempotent(database: Database) -> None:
    database.migrate()
    head = ScriptDirectory.from_config(database.alembic_config()).get_current_head()
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert head is not None and ctx.get_current_revision() == head
