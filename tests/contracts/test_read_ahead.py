"""Effective group names in one statement, and the check-in read-ahead never serving stale
rows (:mod:`mdm_core.storage.sql.read_ahead`), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from mdm_core.directory.mirror import effective_group_ids
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.posture.model import Ownership, Platform, Posture
from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return _seeded(SqlStorage(database))


def _seeded(s: SqlStorage) -> SqlStorage:
    with s.unit_of_work() as uow:
        uow.devices.create(
            DeviceRecord(
                id="dev-1",
                user_id="alice",
                platform=Platform.LINUX,
                ownership=Ownership.CORPORATE,
                status=DeviceStatus.ACTIVE,
                serial_number=None,
                cert_serial="01",
                key_thumbprint="tp",
                enrollment_generation=1,
                enrolled_at=NOW,
                last_checkin_at=None,
            ),
            public_key=b"\x00",
        )
        uow.directory_users.upsert(DirectoryUser("alice", "alice", True, "local", NOW))
        for gid in ("a", "b", "c", "d"):
            uow.directory_groups.upsert(DirectoryGroup(gid, f"name-{gid}", "local", NOW))
        uow.memberships.add(Membership("a", "alice", MemberKind.USER))
        uow.memberships.add(Membership("b", "a", MemberKind.GROUP))  # a in b
        uow.memberships.add(Membership("c", "b", MemberKind.GROUP))  # b in c
        uow.memberships.add(Membership("a", "c", MemberKind.GROUP))  # c in a: a cycle
        uow.memberships.add(Membership("d", "bob", MemberKind.USER))
    return s


def _posture() -> Posture:
    return Posture(platform=Platform.LINUX, collected_at=NOW, storage_encrypted=True)


def test_effective_group_names_follow_nesting_and_survive_cycles(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        names = uow.memberships.effective_group_names("alice")
        ids = effective_group_ids(uow, "alice")  # the step-by-step resolution agrees
        assert names == {"name-a", "name-b", "name-c"}
        assert names == frozenset(uow.directory_groups.names(ids).values())
        assert uow.memberships.effective_group_names("bob") == {"name-d"}
        assert uow.memberships.effective_group_names("nobody") == frozenset()


def test_the_checkin_statement_reads_ahead_what_the_hook_asks_next(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.compliance.sync_rule_failures("dev-1", [("p", "r")], at=NOW)
        uow.compliance.put_state(
            ComplianceRecord("dev-1", ComplianceState.NONCOMPLIANT, "warn", [], ["p"], NOW)
        )
    with storage.unit_of_work() as uow:
        uow.posture.record("dev-1", _posture(), received_at=NOW, history_length=3)
        record, failures = uow.compliance.evaluation_state("dev-1")
        assert record is not None and record.state is ComplianceState.NONCOMPLIANT
        assert record.evaluated_at == NOW
        assert failures == {("p", "r"): NOW}
        assert uow.memberships.effective_group_names("alice") == {"name-a", "name-b", "name-c"}
        # served once: the next call reads the database again, with the same answer
        assert uow.compliance.evaluation_state("dev-1") == (record, failures)


def test_a_write_in_between_is_never_hidden_by_the_read_ahead(storage: SqlStorage) -> None:
    later = NOW + timedelta(minutes=5)
    with storage.unit_of_work() as uow:
        uow.posture.record("dev-1", _posture(), received_at=NOW, history_length=3)
        uow.compliance.sync_rule_failures("dev-1", [("p", "new")], at=later)
        uow.memberships.add(Membership("d", "alice", MemberKind.USER))
        record, failures = uow.compliance.evaluation_state("dev-1")
        assert record is None and failures == {("p", "new"): later}
        assert "name-d" in uow.memberships.effective_group_names("alice")


@pytest.fixture
def pg_storage(postgres_server_url: str) -> Iterator[SqlStorage]:
    """The read-ahead is PostgreSQL's (SQLite runs the reads as statements of their own)."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = Database(postgres_server_url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    db = Database(postgres_server_url.rpartition("/")[0] + "/" + name)
    db.migrate()
    try:
        yield _seeded(SqlStorage(db))
    finally:
        db.dispose()


def test_a_concurrent_checkin_committing_first_is_not_hidden(pg_storage: SqlStorage) -> None:
    """B's statement starts while A holds the posture row; A then records a verdict and
    commits. B's snapshot predates A's writes, so B must read the compliance state itself."""
    storage = pg_storage
    seen: list[tuple[ComplianceRecord | None, dict[tuple[str, str], datetime]]] = []
    a_recorded = threading.Event()

    def second() -> None:
        a_recorded.wait(5)
        with storage.unit_of_work() as uow:
            uow.posture.record("dev-1", _posture(), received_at=NOW, history_length=3)
            seen.append(uow.compliance.evaluation_state("dev-1"))

    thread = threading.Thread(target=second)
    thread.start()
    with storage.unit_of_work() as uow:
        uow.posture.record("dev-1", _posture(), received_at=NOW, history_length=3)
        a_recorded.set()
        time.sleep(0.5)  # B's statement is now waiting for A's row lock
        uow.compliance.sync_rule_failures("dev-1", [("p", "r")], at=NOW)
        uow.compliance.put_state(
            ComplianceRecord("dev-1", ComplianceState.COMPLIANT, "allow", [], ["p"], NOW)
        )
    thread.join(10)
    assert len(seen) == 1
    record, failures = seen[0]
    assert record is not None and record.state is ComplianceState.COMPLIANT
    assert failures == {("p", "r"): NOW}
