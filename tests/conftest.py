"""Shared fixtures: real databases (SQLite and PostgreSQL), real Redis, a fixed clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mdm_core.storage.sql.database import Database
from tests.services import PrivatePostgres, PrivateRedis


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server URL: from the environment or a private instance for this worker."""
    url = os.environ.get("POSTURE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = PrivatePostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: from the environment or a private redis-server for this worker."""
    url = os.environ.get("POSTURE_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = PrivateRedis()
    try:
        yield server.start()
    finally:
        server.stop()


def _fresh_postgres_db(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = Database(server_url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database, once on SQLite and once on a real PostgreSQL."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path}/store.sqlite3")
    else:
        server_url = request.getfixturevalue("postgres_server_url")
        db = Database(_fresh_postgres_db(server_url))
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def postgres_database(postgres_server_url: str) -> Iterator[Database]:
    """A migrated, empty database on a real PostgreSQL (for what only it can show: row locks
    and racing transactions between connections)."""
    db = Database(_fresh_postgres_db(postgres_server_url))
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database (for tests that are not about the backend)."""
    db = Database(f"sqlite:///{tmp_path}/store.sqlite3")
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


#: Variables `posture serve` exports for the server it execs (log format, multi-process metrics
#: directory). A test that runs `serve` in-process with exec recorded must not leave them to the
#: tests that follow in the same worker (prometheus_client would switch to multi-process mode).
_SERVE_EXPORTS = ("PROMETHEUS_MULTIPROC_DIR", "POSTURE_LOG_FORMAT")


@pytest.fixture(autouse=True)
def _restore_serve_exports() -> Iterator[None]:
    before = {key: os.environ.get(key) for key in _SERVE_EXPORTS}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
