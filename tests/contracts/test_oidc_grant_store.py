"""Contract of the OpenID provider's grant stores, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.oidc.grants import CodeRecord, GrantSubject, TokenRecord, digest
from posture_gateway.oidc.sql_grants import (
    ConnectionTokenRevoker,
    SqlCodeStore,
    SqlTokenStore,
)

NOW = datetime.now(UTC).replace(microsecond=0)
SUBJECT = GrantSubject(
    user_id="u1",
    auth_time=1700000000,
    acr="urn:x",
    amr=("pwd", "hwk"),
    profile={"email": "u1@example.com"},
    posture={"device_id": "d1", "policy_ids": ["p"]},
    device_id="d1",
)


@pytest.fixture
def stores(database: Database) -> Iterator[tuple[SqlCodeStore, SqlTokenStore]]:
    yield SqlCodeStore(database), SqlTokenStore(database)


def _code(code: str = "code-1", **overrides: object) -> CodeRecord:
    values: dict[str, object] = {
        "code_hash": digest(code),
        "client_id": "app",
        "redirect_uri": "https://app/cb",
        "scope": "openid",
        "nonce": "n1",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
        "subject": SUBJECT,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=2),
    }
    values.update(overrides)
    return CodeRecord(**values)  # type: ignore[arg-type]


def _token(
    token_id: str = "jti-1",  # noqa: S107 - a token id, not a secret
    refresh: str | None = "rt-1",
    **overrides: object,
) -> TokenRecord:
    values: dict[str, object] = {
        "id": token_id,
        "client_id": "app",
        "scope": "openid",
        "subject": SUBJECT,
        "family_id": "fam-1",
        "issued_at": NOW,
        "access_expires_at": NOW + timedelta(minutes=10),
        "refresh_token_hash": digest(refresh) if refresh else None,
        "refresh_expires_at": NOW + timedelta(hours=1) if refresh else None,
        "code_hash": digest("code-1"),
    }
    values.update(overrides)
    return TokenRecord(**values)  # type: ignore[arg-type]


def test_code_is_consumed_once(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    codes, _ = stores
    codes.save(_code())
    record = codes.consume(digest("code-1"), now=NOW)
    assert record is not None and record.subject == SUBJECT and record.nonce == "n1"
    assert record.expires_at == NOW + timedelta(minutes=2)
    assert codes.consume(digest("code-1"), now=NOW) is None
    assert codes.consume(digest("unknown"), now=NOW) is None


def test_duplicate_code_is_refused(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    codes, _ = stores
    codes.save(_code())
    with pytest.raises(IntegrityError):
        codes.save(_code())


def test_expired_code(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    codes, _ = stores
    codes.save(_code())
    assert codes.consume(digest("code-1"), now=NOW + timedelta(minutes=2)) is None


def test_code_reuse_revokes_tokens_from_it(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    codes, tokens = stores
    codes.save(_code())
    assert codes.consume(digest("code-1"), now=NOW) is not None
    tokens.save(_token())
    tokens.save(_token("jti-other", refresh=None, code_hash=digest("other"), family_id="f2"))
    assert codes.consume(digest("code-1"), now=NOW) is None
    revoked = tokens.get("jti-1")
    assert revoked is not None and revoked.revoked_at is not None
    other = tokens.get("jti-other")
    assert other is not None and other.revoked_at is None


def test_concurrent_consume_has_one_winner(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    codes, _ = stores
    codes.save(_code())
    results: list[object] = []
    barrier = threading.Barrier(4)

    def spend() -> None:
        barrier.wait()
        results.append(codes.consume(digest("code-1"), now=NOW))

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1


def test_nonce_seen(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    codes, _ = stores
    assert codes.nonce_seen("app", "n1") is False
    codes.save(_code())
    assert codes.nonce_seen("app", "n1") is True
    assert codes.nonce_seen("other-app", "n1") is False


def test_token_roundtrip(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    _, tokens = stores
    tokens.save(_token())
    record = tokens.get("jti-1")
    assert record == _token()
    assert tokens.find_by_refresh(digest("rt-1")) == record
    assert tokens.get("nope") is None and tokens.find_by_refresh(digest("nope")) is None
    with pytest.raises(IntegrityError):
        tokens.save(_token())


def test_refresh_claim_rotation_and_replay(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    _, tokens = stores
    tokens.save(_token())
    claimed = tokens.claim_refresh(digest("rt-1"), now=NOW)
    assert claimed is not None and claimed.id == "jti-1"
    tokens.save(_token("jti-2", refresh="rt-2", code_hash=None))
    assert tokens.claim_refresh(digest("rt-1"), now=NOW) is None  # replay of the rotated one
    rotated = tokens.get("jti-2")
    assert rotated is not None and rotated.revoked_at is not None  # the family went with it
    assert tokens.claim_refresh(digest("unknown"), now=NOW) is None


def test_expired_refresh(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    _, tokens = stores
    tokens.save(_token())
    assert tokens.claim_refresh(digest("rt-1"), now=NOW + timedelta(hours=1)) is None
    record = tokens.get("jti-1")
    assert record is not None and record.revoked_at is None  # expiry is not a replay


def test_revoke_and_bulk_revocation(stores: tuple[SqlCodeStore, SqlTokenStore]) -> None:
    _, tokens = stores
    tokens.save(_token())
    tokens.save(_token("jti-2", refresh=None, family_id="f2"))
    tokens.save(
        _token(
            "jti-3",
            refresh=None,
            family_id="f3",
            subject=GrantSubject(user_id="u2", auth_time=1, acr="", amr=(), device_id="d2"),
        )
    )
    assert tokens.revoke(token_id="jti-1", reason="revoked") == 1
    assert tokens.revoke(token_id="jti-1", reason="revoked") == 0
    assert tokens.revoke(token_id="unknown", reason="revoked") == 0
    with pytest.raises(ValueError):
        tokens.revoke(reason="revoked")
    assert tokens.revoke_for_device("d1", reason="posture") == 1  # jti-2; jti-1 already
    assert tokens.revoke_for_user("u2", reason="offboarded") == 1
    assert tokens.revoke_for_user("nobody", reason="offboarded") == 0
    assert tokens.revoke(family_id="f3", reason="x") == 0


def test_active_helpers() -> None:
    record = _token()
    assert record.access_active(NOW) and record.refresh_active(NOW)
    assert not record.access_active(NOW + timedelta(minutes=10))
    assert not _token(refresh=None).refresh_active(NOW)


def _revoked_ids(tokens: SqlTokenStore, ids: list[str]) -> set[str]:
    return {i for i in ids if (r := tokens.get(i)) is not None and r.revoked_at is not None}


def test_connection_revoker_commits_and_rolls_back_with_the_unit_of_work(
    database: Database, stores: tuple[SqlCodeStore, SqlTokenStore]
) -> None:
    """The revoker the MDM unit of work calls: on ITS connection, so it shares its fate."""
    _, tokens = stores
    tokens.save(_token())
    tokens.save(_token("jti-2", refresh=None, family_id="f2"))
    tokens.save(
        _token(
            "jti-3",
            refresh="rt-3",
            family_id="f3",
            subject=GrantSubject(user_id="u2", auth_time=1, acr="", amr=(), device_id="d2"),
        )
    )
    storage = SqlStorage(database)
    storage.add_credential_revoker(ConnectionTokenRevoker)
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        assert uow.credentials.revoke_for_device("d1", reason="device_quarantined", at=NOW) == 2
        raise RuntimeError("the status change failed")
    assert _revoked_ids(tokens, ["jti-1", "jti-2", "jti-3"]) == set()  # rolled back together
    with storage.unit_of_work() as uow:
        assert uow.credentials.revoke_for_device("d1", reason="device_quarantined", at=NOW) == 2
        assert uow.credentials.revoke_for_device("d1", reason="again", at=NOW) == 0
        assert uow.credentials.revoke_for_device("unknown", reason="x", at=NOW) == 0
    assert _revoked_ids(tokens, ["jti-1", "jti-2", "jti-3"]) == {"jti-1", "jti-2"}
    with storage.unit_of_work() as uow:
        assert uow.credentials.revoke_for_user("u2", reason="x" * 60, at=NOW) == 1  # truncated
        assert uow.credentials.revoke_for_user("nobody", reason="user_disabled", at=NOW) == 0
    assert _revoked_ids(tokens, ["jti-3"]) == {"jti-3"}
    # A revoked refresh token cannot be claimed.
    assert tokens.claim_refresh(digest("rt-3"), now=NOW) is None


def test_unit_of_work_without_a_revoker_revokes_nothing(
    database: Database, stores: tuple[SqlCodeStore, SqlTokenStore]
) -> None:
    _, tokens = stores
    tokens.save(_token())
    with SqlStorage(database).unit_of_work() as uow:
        assert uow.credentials.revoke_for_device("d1", reason="x", at=NOW) == 0
    assert _revoked_ids(tokens, ["jti-1"]) == set()
    with pytest.raises(ValueError):
        SqlStorage(database).add_credential_revoker(None)  # type: ignore[arg-type]


def test_connection_revoker_counts_only_usable_tokens_and_closes_the_rest(
    database: Database, stores: tuple[SqlCodeStore, SqlTokenStore]
) -> None:
    """``count`` (of ``access.revoked``) is what was still usable; expired ones close too."""
    _, tokens = stores
    past = NOW - timedelta(days=1)
    tokens.save(_token("live-access", refresh=None, family_id="f1"))
    tokens.save(
        _token(
            "live-refresh",
            refresh="rt-live",
            family_id="f2",
            access_expires_at=past,
            refresh_expires_at=NOW + timedelta(hours=1),
        )
    )
    tokens.save(
        _token(
            "dead",
            refresh="rt-dead",
            family_id="f3",
            access_expires_at=past,
            refresh_expires_at=past,
        )
    )
    storage = SqlStorage(database)
    storage.add_credential_revoker(ConnectionTokenRevoker)
    with storage.unit_of_work() as uow:
        assert uow.credentials.revoke_for_device("d1", reason="device_quarantined", at=NOW) == 2
    assert _revoked_ids(tokens, ["live-access", "live-refresh", "dead"]) == {
        "live-access",
        "live-refresh",
        "dead",
    }
