"""Contract: EnrollmentTokenStore and RegisteredSerialStore on both backends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.domain.errors import Conflict
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.enrollment import EnrollmentTokenRecord, RegisteredSerial
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _token(token_hash: str = "h1", **kw: object) -> EnrollmentTokenRecord:  # noqa: S107
    values: dict[str, object] = {
        "token_hash": token_hash,
        "user_id": "alice",
        "ownership": Ownership.BYOD,
        "platform": None,
        "created_by": "admin:root",
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
    }
    values.update(kw)
    return EnrollmentTokenRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def test_token_add_get(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.enrollment_tokens.get_token("h1") is None
        uow.enrollment_tokens.add_token(_token(platform=Platform.IOS))
        assert uow.enrollment_tokens.get_token("h1") == _token(platform=Platform.IOS)
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.enrollment_tokens.add_token(_token())


def test_redeem_once(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.enrollment_tokens.add_token(_token())
        first = uow.enrollment_tokens.redeem_token("h1", device_id="d1", at=NOW)
        assert first is not None and first.used_at == NOW and first.used_by_device == "d1"
        assert uow.enrollment_tokens.redeem_token("h1", device_id="d2", at=NOW) is None
        assert uow.enrollment_tokens.redeem_token("unknown", device_id="d2", at=NOW) is None
        got = uow.enrollment_tokens.get_token("h1")
        assert got is not None and got.used_by_device == "d1"


def test_redeem_expired_fails(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.enrollment_tokens.add_token(_token())
        at = NOW + timedelta(hours=1)  # expires_at > at is required: the boundary is expired
        assert uow.enrollment_tokens.redeem_token("h1", device_id="d1", at=at) is None
        got = uow.enrollment_tokens.get_token("h1")
        assert got is not None and got.used_at is None


def test_concurrent_redemption_has_one_winner(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.enrollment_tokens.add_token(_token())
    barrier = threading.Barrier(2)
    results: list[object] = []
    errors: list[BaseException] = []

    def redeem(device_id: str) -> None:
        try:
            with storage.unit_of_work() as uow:
                barrier.wait(timeout=10)
                results.append(
                    uow.enrollment_tokens.redeem_token("h1", device_id=device_id, at=NOW)
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=redeem, args=(f"d{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sum(r is not None for r in results) == 1


def test_serial_register_get_rebind(storage: SqlStorage) -> None:
    reg = RegisteredSerial(
        serial_number="SN1",
        platform=Platform.MACOS,
        user_id=None,
        registered_by="admin:root",
        registered_at=NOW,
    )
    with storage.unit_of_work() as uow:
        assert uow.serials.get("SN1") is None
        assert uow.serials.bind_device("SN1", device_id="d1", expected=None) is False  # unknown
        uow.serials.register(reg)
        assert uow.serials.get("SN1") == reg
        assert uow.serials.bind_device("SN1", device_id="d1", expected=None) is True
        assert uow.serials.bind_device("SN1", device_id="d2", expected=None) is False  # moved
        assert uow.serials.bind_device("SN1", device_id="d2", expected="d1") is True
        # re-registering changes user/platform and keeps the bound device
        later = NOW + timedelta(days=1)
        uow.serials.register(
            RegisteredSerial(
                serial_number="SN1",
                platform=Platform.WINDOWS,
                user_id="bob",
                registered_by="admin:two",
                registered_at=later,
                secret_hash="ab" * 32,
            )
        )
        got = uow.serials.get("SN1")
        assert got is not None
        assert (got.platform, got.user_id, got.registered_by, got.device_id, got.secret_hash) == (
            Platform.WINDOWS,
            "bob",
            "admin:two",
            "d2",
            "ab" * 32,
        )
