"""The bulk path of ``sync_source`` (new users and their memberships in a few statements)
gives exactly what the row path gives: the same outbox events in the same order (membership
changes, user_groups_changed with before/after), the same summary and audit record, and the
same mirror; and it costs a bounded number of statements however many users are new."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import mdm_core.directory.sync as sync_module
from mdm_core.directory.mirror import effective_group_names
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.directory.sync import SourceGroup, SourceUser, sync_source
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)

GROUPS = [
    SourceGroup(name="g-a", groups=("g-b",)),
    SourceGroup(name="g-b", groups=("g-c",)),
    SourceGroup(name="g-c", groups=("g-a",)),  # a cycle
    SourceGroup(name="g-d"),
]
#: The second sync moves the nesting (affecting users already there) and adds groups.
GROUPS2 = [
    SourceGroup(name="g-e", groups=("g-parent",)),  # g-parent: unknown, created
    SourceGroup(name="g-a", groups=("g-b", "g-d")),
    SourceGroup(name="g-b"),
    SourceGroup(name="g-c", groups=("g-a",)),
    SourceGroup(name="g-d"),
    SourceGroup(name="g-parent", id="gp"),
    SourceGroup(name="g-foreign", groups=("g-a",)),  # another source's: skipped
]


def _users(n: int) -> list[SourceUser]:
    return [
        SourceUser(
            id=f"u-{i:03}",
            username=f"user{i:03}",
            email=f"user{i:03}@example.com" if i % 3 else None,
            display_name=f"User {i}",
            active=i % 7 != 0,
            groups=(("g-a",) if i % 2 else ()) + (("g-d", "new-group") if i % 5 == 0 else ()),
        )
        for i in range(n)
    ]


@pytest.fixture
def row_database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/row.sqlite3")
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


TRUTH = SourceOfTruth.parse({"groups": ["ldap", "import"], "email": ["import", "ldap"]})


def _run(storage: SqlStorage, truth: SourceOfTruth | None) -> tuple[Any, ...]:
    # Set-up: some users already there, one of another source, one username taken.
    sync_source(storage, "import", _users(6)[:3], GROUPS, clock=lambda: T0, source_of_truth=truth)
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(
            DirectoryUser(
                id="u-other", username="user010", active=True, source="scim:x", updated_at=T0
            )
        )
        uow.directory_groups.upsert(
            DirectoryGroup(id="g-foreign", name="g-foreign", source="ldap", updated_at=T0)
        )
        uow.directory_users.upsert(
            DirectoryUser(
                id="u-004", username="owned-elsewhere", active=True, source="ldap", updated_at=T0
            )
        )
        first = uow.outbox.fetch_unpublished(10_000)
        uow.outbox.mark_published([e.id for e in first], at=T0)
    users = _users(30)
    users[1] = SourceUser(id="u-001", username="user001", groups=("g-d",))  # changed
    users[12] = SourceUser(id="u-012", username="user012", groups=("g-foreign", "g-e"))
    summary = sync_source(
        storage,
        "import",
        users,
        GROUPS2,
        clock=lambda: T0,
        skip_conflicts=True,
        actor="admin:x",
        source_of_truth=truth,
    )
    with storage.unit_of_work() as uow:
        events = [
            (e.event.type, e.event.subject, e.event.payload)
            for e in uow.outbox.fetch_unpublished(10_000)
        ]
        audit = [(a.action, a.detail) for a in uow.audit.recent("import")]
        mirror = sorted(
            (u.id, u.username, u.email, u.display_name, u.active, u.source)
            for u in uow.directory_users.list()
        )
        groups = {u: effective_group_names(uow, u) for u, *_ in mirror}
        claims = {u: uow.source_claims.for_user(u) for u, *_ in mirror}
    return summary, events, audit, mirror, groups, claims


@pytest.mark.parametrize("truth", [None, TRUTH], ids=["owners", "source_of_truth"])
def test_the_bulk_path_equals_the_row_path(
    database: Database,
    row_database: Database,
    monkeypatch: pytest.MonkeyPatch,
    truth: SourceOfTruth | None,
) -> None:
    bulk = _run(SqlStorage(database), truth)
    monkeypatch.setattr(sync_module, "BULK_WRITES", False)
    row = _run(SqlStorage(row_database), truth)
    summary, events, audit, mirror, groups, claims = bulk
    assert claims == row[5]
    assert summary == row[0]
    assert events == row[1]
    assert audit == row[2]
    assert mirror == row[3] and groups == row[4]
    assert len(summary.added) == 25
    assert summary.skipped and summary.groups_changed_users
    assert "group g-foreign (owned by ldap)" in summary.skipped
    assert groups["u-012"] == {"g-foreign", "g-e", "g-parent"}
    assert groups["u-011"] == {"g-a", "g-b", "g-d"}
    assert summary.groups_added == ["g-parent", "g-e"] and summary.memberships_removed == 2


def test_a_first_sync_costs_a_bounded_number_of_statements(database: Database) -> None:
    storage = SqlStorage(database)
    counts = []
    for n in (50, 200):
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(database.engine, "before_cursor_execute", count)
        try:
            sync_source(
                storage,
                f"src{n}",
                [SourceUser(id=f"{n}-{i}", username=f"{n}-{i}", groups=("g-a",)) for i in range(n)],
                GROUPS if n == 50 else (),
                clock=lambda: T0,
            )
        finally:
            event.remove(database.engine, "before_cursor_execute", count)
        counts.append(statements)
    # 4x the users: the bulk statements do not grow with them (the row path: ~10 per user)
    assert counts[1] < 60, counts
