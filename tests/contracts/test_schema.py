"""The Alembic migrations create exactly the schema the code declares, on both backends:
the core's tables and the gateway's own (OIDC grants, nonces, login transactions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import directory_users, metadata
from posture_gateway.admin.tables import metadata as admin_metadata
from posture_gateway.hr.tables import metadata as hr_metadata
from posture_gateway.oidc.tables import metadata as gateway_metadata
from posture_gateway.signals.tables import metadata as signals_metadata

# SQLite cannot reflect an index on an expression, so alembic warns that it skips comparing
# ``ix_directory_users_email_lower`` there (PostgreSQL compares it);
# test_email_lookup_uses_the_lower_email_index checks the index on both.
_SQLITE_SKIPS_EXPRESSION_INDEX = [
    "ignore:Skipped unsupported reflection of expression-based index "
    "ix_directory_users_email_lower",
    "ignore:autogenerate skipping metadata-specified expression-based index "
    "'ix_directory_users_email_lower'",
]


@pytest.mark.filterwarnings(*_SQLITE_SKIPS_EXPRESSION_INDEX)
def test_migrations_match_tables(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn),
            [metadata, gateway_metadata, signals_metadata, admin_metadata, hr_metadata],
        )
    assert diff == []


def test_gateway_tables_come_from_the_migrations(database: Database) -> None:
    """Every gateway table exists after ``migrate`` alone (the gateway creates none)."""
    tables = set(inspect(database.engine).get_table_names())
    assert set(gateway_metadata.tables) <= tables
    assert set(metadata.tables) <= tables
    assert set(signals_metadata.tables) <= tables
    assert set(admin_metadata.tables) <= tables
    assert set(hr_metadata.tables) <= tables


@pytest.mark.filterwarnings(*_SQLITE_SKIPS_EXPRESSION_INDEX)
def test_migrate_keeps_gateway_tables_created_earlier(tmp_path: Path) -> None:
    """A database whose gateway tables an earlier release made with ``create_all`` upgrades."""
    db = Database(f"sqlite:///{tmp_path}/old.sqlite3")
    try:
        gateway_metadata.create_all(db.engine)
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn),
                [metadata, gateway_metadata, signals_metadata, admin_metadata, hr_metadata],
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


def test_email_lookup_uses_the_lower_email_index(database: Database) -> None:
    """The migration made ``ix_directory_users_email_lower`` and the planner uses it for the
    HR webhooks' case-insensitive e-mail match (``SqlDirectoryStore.find_by_email``'s query)."""
    query = select(directory_users.c.id).where(
        func.lower(directory_users.c.email) == "someone@example.com"  # the lookup's expression
    )
    with database.engine.begin() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        else:
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: seek anyway
            plan = " ".join(str(r[0]) for r in conn.execute(text(f"EXPLAIN {sql}")))
    assert "ix_directory_users_email_lower" in plan, plan
