"""Contract of IdentityLinkStore (and DirectoryUserStore.find_by_email) on SQLite and
PostgreSQL: (issuer, subject) -> directory user, one subject per issuer per user."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from mdm_core.domain.errors import Conflict
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.identity_links import MAX_ISSUER, MAX_SUBJECT, IdentityLink
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
A = "https://idp-a.example"
B = "https://idp-b.example"


def _link(issuer: str, subject: str, user_id: str, method: str = "admin") -> IdentityLink:
    return IdentityLink(
        issuer=issuer, subject=subject, user_id=user_id, linked_at=T0, method=method
    )


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def test_link_get_and_idempotence(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(A, "sub-1") is None
        assert uow.identity_links.link(_link(A, "sub-1", "u-alice", "email")) is True
        assert uow.identity_links.link(_link(A, "sub-1", "u-alice", "email")) is False
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(A, "sub-1") == _link(A, "sub-1", "u-alice", "email")
        # exact match only
        assert uow.identity_links.get(A, "SUB-1") is None
        assert uow.identity_links.get(A + "/", "sub-1") is None
        assert uow.identity_links.get(B, "sub-1") is None


def test_an_identity_links_to_one_user(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.identity_links.link(_link(A, "sub-1", "u-alice"))
    with storage.unit_of_work() as uow, pytest.raises(Conflict):
        uow.identity_links.link(_link(A, "sub-1", "u-bob"))
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(A, "sub-1").user_id == "u-alice"  # type: ignore[union-attr]


def test_one_subject_per_issuer_per_user(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.identity_links.link(_link(A, "sub-1", "u-alice"))
    with storage.unit_of_work() as uow, pytest.raises(Conflict):
        uow.identity_links.link(_link(A, "sub-2", "u-alice"))
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(A, "sub-2") is None
        # another issuer is another namespace
        assert uow.identity_links.link(_link(B, "sub-1", "u-alice")) is True
        assert [(x.issuer, x.subject) for x in uow.identity_links.for_user("u-alice")] == [
            (A, "sub-1"),
            (B, "sub-1"),
        ]
        assert uow.identity_links.for_user("u-nobody") == []


def test_unlink(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.identity_links.link(_link(A, "sub-1", "u-alice"))
        uow.identity_links.link(_link(B, "x", "u-alice"))
        uow.identity_links.link(_link(B, "y", "u-bob"))
        assert uow.identity_links.unlink(A, "sub-1") is True
        assert uow.identity_links.unlink(A, "sub-1") is False
        assert uow.identity_links.get(A, "sub-1") is None
        assert uow.identity_links.unlink_user("u-alice") == 1
        assert uow.identity_links.unlink_user("u-alice") == 0
        assert uow.identity_links.get(B, "y") is not None


@pytest.mark.parametrize(
    ("issuer", "subject"),
    [("", "s"), (A, ""), ("i" * (MAX_ISSUER + 1), "s"), (A, "s" * (MAX_SUBJECT + 1))],
)
def test_bad_identities_are_refused(storage: SqlStorage, issuer: str, subject: str) -> None:
    with storage.unit_of_work() as uow, pytest.raises(ValueError):
        uow.identity_links.link(_link(issuer, subject, "u-alice"))


def test_longest_identity_fits(storage: SqlStorage) -> None:
    issuer, subject = "i" * MAX_ISSUER, "s" * MAX_SUBJECT
    with storage.unit_of_work() as uow:
        assert uow.identity_links.link(_link(issuer, subject, "u-alice")) is True
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(issuer, subject) is not None


def test_a_rolled_back_link_is_gone(storage: SqlStorage) -> None:
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.identity_links.link(_link(A, "sub-1", "u-alice"))
        raise RuntimeError("boom")
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(A, "sub-1") is None


def test_concurrent_first_links_have_one_winner(database: Database) -> None:
    storage = SqlStorage(database)
    results: dict[str, str] = {}
    barrier = threading.Barrier(4)

    def race(user_id: str) -> None:
        barrier.wait()
        try:
            with storage.unit_of_work() as uow:
                uow.identity_links.link(_link(A, "sub-1", user_id))
            results[user_id] = "won"
        except Conflict:
            results[user_id] = "conflict"
        except Exception as exc:  # SQLite: a loser may see "database is locked"
            results[user_id] = type(exc).__name__

    threads = [threading.Thread(target=race, args=(f"u-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [uid for uid, outcome in results.items() if outcome == "won"]
    assert len(winners) == 1, results
    with storage.unit_of_work() as uow:
        link = uow.identity_links.get(A, "sub-1")
    assert link is not None and link.user_id == winners[0]


def test_deleting_a_user_removes_its_links(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(
            DirectoryUser(id="u-alice", username="alice", active=True, source="scim", updated_at=T0)
        )
        uow.identity_links.link(_link(A, "sub-1", "u-alice"))
    with storage.unit_of_work() as uow:
        assert uow.directory_users.delete("u-alice") is True
    with storage.unit_of_work() as uow:
        assert uow.identity_links.get(A, "sub-1") is None


def test_find_by_email_ignores_case_and_returns_every_match(storage: SqlStorage) -> None:
    def user(uid: str, email: str | None) -> DirectoryUser:
        return DirectoryUser(
            id=uid, username=uid, active=True, source="ldap", updated_at=T0, email=email
        )

    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(user("u-b", "Alice@Example.com"))
        uow.directory_users.upsert(user("u-a", "alice@example.com"))
        uow.directory_users.upsert(user("u-c", "carol@example.com"))
        uow.directory_users.upsert(user("u-d", None))
    with storage.unit_of_work() as uow:
        assert [u.id for u in uow.directory_users.find_by_email("ALICE@example.COM")] == [
            "u-a",
            "u-b",
        ]
        assert uow.directory_users.find_by_email("nobody@example.com") == []
        assert uow.directory_users.find_by_email("") == []
