"""Contract: audit by group commit on SQLite and PostgreSQL.

Concurrent records share transactions, each caller returns only once its own record is
committed, and a write that fails or does not commit in time raises
:class:`AuditUnavailable` (the decision blocks) and leaves no record behind.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, select, text

from mdm_core.storage.sql.audit_batch import AuditUnavailable, GroupCommitAuditWriter
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import audit_log
from mdm_core.storage.sql.uow import SqlStorage


def _count(database: Database, subject: str | None = None) -> int:
    stmt = select(func.count()).select_from(audit_log)
    if subject is not None:
        stmt = stmt.where(audit_log.c.subject == subject)
    with database.transaction() as conn:
        return int(conn.execute(stmt).scalar_one())


def test_a_record_is_committed_when_record_returns(database: Database) -> None:
    writer = GroupCommitAuditWriter(SqlStorage(database))
    try:
        writer.record("user:u1", "access.decision", "d1", "allow", {"app": "payroll"})
        with SqlStorage(database).unit_of_work() as uow:
            (entry,) = uow.audit.recent("d1")
        assert (entry.actor, entry.outcome, entry.detail) == (
            "user:u1",
            "allow",
            {"app": "payroll"},
        )
    finally:
        writer.close()


def test_concurrent_records_share_commits_and_all_are_durable(database: Database) -> None:
    writer = GroupCommitAuditWriter(SqlStorage(database))
    commits = 0

    def on_commit(_conn: object) -> None:
        nonlocal commits
        commits += 1

    gate = threading.Barrier(32)

    def one(i: int) -> None:
        gate.wait()
        writer.record("user:u", "access.decision", f"s{i}", "allow", {"i": i})
        assert _count(database, f"s{i}") == 1  # durable when record returned

    event.listen(database.engine, "commit", on_commit)
    try:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(one, range(32)))
    finally:
        event.remove(database.engine, "commit", on_commit)
        writer.close()
    assert _count(database) == 32
    assert writer.batches < 32  # records were grouped


def test_a_failed_write_raises_for_every_waiter_and_writes_nothing(database: Database) -> None:
    writer = GroupCommitAuditWriter(SqlStorage(database), timeout_s=5.0)
    try:
        with pytest.raises(AuditUnavailable, match="audit write failed"):
            writer.record("user:u", "access.decision", "s", "allow", {"bad": object()})
        assert _count(database) == 0
        writer.record("user:u", "access.decision", "s", "allow", {})  # the writer lives on
        assert _count(database) == 1
    finally:
        writer.close()


def test_a_record_not_durable_in_time_raises_and_is_not_written_later(
    database: Database,
) -> None:
    writer = GroupCommitAuditWriter(SqlStorage(database), timeout_s=0.3)
    blocker = database.engine.connect()
    try:
        blocker_tx = blocker.begin()
        if database.is_postgres:
            blocker.execute(text("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE"))
        else:
            blocker.execute(text("DELETE FROM audit_log WHERE id < 0"))  # holds the write lock
        started = time.monotonic()
        with pytest.raises(AuditUnavailable, match="not durable"):
            writer.record("user:u", "access.decision", "late", "allow", {})
        assert time.monotonic() - started < 3.0
        # A second waiter queued behind the stuck batch gives up before it is taken: never
        # written, even once the lock goes.
        with pytest.raises(AuditUnavailable):
            writer.record("user:u", "access.decision", "never", "allow", {})
        blocker_tx.rollback()
    finally:
        blocker.close()
    writer.record("user:u", "access.decision", "after", "allow", {})
    writer.close()
    assert _count(database, "never") == 0
    assert _count(database, "after") == 1


def test_a_closed_writer_refuses(database: Database) -> None:
    writer = GroupCommitAuditWriter(SqlStorage(database))
    writer.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        writer.record("user:u", "access.decision", "s", "allow", {})
    assert _count(database) == 0


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        GroupCommitAuditWriter(None)  # type: ignore[arg-type]
