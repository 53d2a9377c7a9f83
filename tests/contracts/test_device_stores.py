"""Contract: DeviceStore, DeviceIdentityStore, CertificateStore, CaKeyStore on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.certauth import CertificateRecord, StoredCaKey
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _device(device_id: str = "d1", user: str = "alice", **kw: object) -> DeviceRecord:
    values: dict[str, object] = {
        "id": device_id,
        "user_id": user,
        "platform": Platform.MACOS,
        "ownership": Ownership.CORPORATE,
        "status": DeviceStatus.ACTIVE,
        "serial_number": "SN1",
        "cert_serial": "c1",
        "key_thumbprint": "thumb1",
        "enrollment_generation": 1,
        "enrolled_at": NOW,
        "last_checkin_at": None,
    }
    values.update(kw)
    return DeviceRecord(**values)  # type: ignore[arg-type]


def _cert(serial: str = "c1", device_id: str = "d1", **kw: object) -> CertificateRecord:
    values: dict[str, object] = {
        "serial": serial,
        "device_id": device_id,
        "user_id": "alice",
        "key_thumbprint": "thumb1",
        "not_before": NOW,
        "not_after": NOW + timedelta(days=30),
        "pem": "-----BEGIN CERTIFICATE-----",
    }
    values.update(kw)
    return CertificateRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def test_device_create_get_roundtrip(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.devices.get("d1") is None
        uow.devices.create(_device(), public_key=b"spki")
    with storage.unit_of_work() as uow:
        got = uow.devices.get("d1")
    assert got == _device()
    assert got is not None and got.enrolled_at.tzinfo is not None


def test_device_create_twice_conflicts(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.devices.create(_device(user="mallory"), public_key=b"other")
    with storage.unit_of_work() as uow:
        got = uow.devices.get("d1")
    assert got is not None and got.user_id == "alice"


def test_update_status_and_unknown(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
        updated = uow.devices.update_status(
            "d1", DeviceStatus.PENDING_VERIFICATION, reason="re-enrolled", at=NOW
        )
        assert updated.status is DeviceStatus.PENDING_VERIFICATION
        assert updated.status_reason == "re-enrolled"
        with pytest.raises(NotFound):
            uow.devices.update_status("nope", DeviceStatus.RETIRED, reason=None, at=NOW)


def test_set_identity_is_compare_and_set(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
        updated = uow.devices.set_identity(
            "d1",
            cert_serial="c2",
            public_key=b"spki2",
            key_thumbprint="thumb2",
            status=DeviceStatus.ACTIVE,
            status_reason=None,
            expected_generation=1,
            new_generation=2,
            at=NOW,
        )
        assert (updated.cert_serial, updated.key_thumbprint) == ("c2", "thumb2")
        assert updated.enrollment_generation == 2
        kwargs = {
            "cert_serial": "c3",
            "public_key": b"spki3",
            "key_thumbprint": "thumb3",
            "status": DeviceStatus.ACTIVE,
            "status_reason": None,
            "expected_generation": 1,  # stale
            "new_generation": 2,
            "at": NOW,
        }
        with pytest.raises(Conflict):
            uow.devices.set_identity("d1", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            uow.devices.set_identity("nope", **kwargs)  # type: ignore[arg-type]


def test_list_for_user(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.devices.list_for_user("alice") == []
        uow.devices.create(_device("d1"), public_key=b"a")
        uow.devices.create(_device("d2", enrolled_at=NOW + timedelta(hours=1)), public_key=b"b")
        uow.devices.create(_device("d3", user="bob"), public_key=b"c")
        assert [d.id for d in uow.devices.list_for_user("alice")] == ["d1", "d2"]


def test_identity_lookup_joins_current_certificate(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.identities.lookup("d1") is None
        uow.devices.create(_device(), public_key=b"spki")
        found = uow.identities.lookup("d1")
        assert found is not None and found.public_key == b"spki"
        assert found.cert_not_after is None  # the row names a certificate that is not there
        uow.certificates.add(_cert())
        found = uow.identities.lookup("d1")
        assert found is not None
        assert found.cert_not_after == NOW + timedelta(days=30)
        assert found.cert_revoked_at is None
        uow.certificates.revoke("c1", reason="test", at=NOW)
        found = uow.identities.lookup("d1")
        assert found is not None and found.cert_revoked_at == NOW


def test_lookup_and_remember_reads_the_identity_and_writes_the_key_once(
    storage: SqlStorage,
) -> None:
    exp = NOW + timedelta(minutes=5)
    with storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
        uow.certificates.add(_cert())
        found, fresh = uow.identities.lookup_and_remember("d1", "k1", exp)
        assert fresh is True
        assert found == uow.identities.lookup("d1")
        again, fresh = uow.identities.lookup_and_remember("d1", "k1", exp)
        assert again == found and fresh is False  # replayed within the transaction
    with storage.unit_of_work() as uow:
        assert uow.identities.lookup_and_remember("d1", "k1", exp)[1] is False  # committed
        assert uow.replay.remember("k1", exp) is False  # the replay store sees the same key
        assert uow.identities.lookup_and_remember("d1", "k2", exp)[1] is True


def test_lookup_and_remember_unknown_device_writes_nothing_once_rolled_back(
    storage: SqlStorage,
) -> None:
    exp = NOW + timedelta(minutes=5)
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        found, _ = uow.identities.lookup_and_remember("ghost", "k9", exp)
        assert found is None
        raise RuntimeError("the verifier refuses: unknown device")
    with storage.unit_of_work() as uow:
        assert uow.replay.remember("k9", exp) is True


def test_certificate_add_get_revoke(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
        assert uow.certificates.get("c1") is None
        assert uow.certificates.is_revoked("c1") is True  # unknown: fail closed
        uow.certificates.add(_cert())
        assert uow.certificates.get("c1") == _cert()
        assert uow.certificates.is_revoked("c1") is False
        assert uow.certificates.revoke("c1", reason="lost", at=NOW) is True
        assert uow.certificates.revoke("c1", reason="again", at=NOW + timedelta(1)) is False
        got = uow.certificates.get("c1")
        assert got is not None and (got.revoked_at, got.revocation_reason) == (NOW, "lost")
        assert uow.certificates.is_revoked("c1") is True
        with pytest.raises(NotFound):
            uow.certificates.revoke("nope", reason="x", at=NOW)


def test_certificate_duplicate_serial_conflicts(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
        uow.certificates.add(_cert())
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.certificates.add(_cert(user_id="mallory"))


def test_revoke_for_device(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.certificates.revoke_for_device("d1", reason="x", at=NOW) == []
        uow.devices.create(_device(), public_key=b"spki")
        uow.devices.create(_device("d2"), public_key=b"spki")
        uow.certificates.add(_cert("c1"))
        uow.certificates.add(_cert("c2"))
        uow.certificates.add(_cert("c3", device_id="d2"))
        uow.certificates.revoke("c1", reason="old", at=NOW)
        assert uow.certificates.revoke_for_device("d1", reason="retired", at=NOW) == ["c2"]
        assert uow.certificates.is_revoked("c3") is False


def test_ca_key_store_first_writer_wins(storage: SqlStorage) -> None:
    key = StoredCaKey(id="ca", encrypted_key_pem="k1", certificate_pem="c1", created_at=NOW)
    with storage.unit_of_work() as uow:
        assert uow.ca_keys.get_ca_key("ca") is None
        assert uow.ca_keys.add_ca_key(key) is True
        other = StoredCaKey(id="ca", encrypted_key_pem="k2", certificate_pem="c2", created_at=NOW)
        assert uow.ca_keys.add_ca_key(other) is False
        assert uow.ca_keys.get_ca_key("ca") == key


def test_rollback_leaves_nothing(storage: SqlStorage) -> None:
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.devices.create(_device(), public_key=b"spki")
        raise RuntimeError("boom")
    with storage.unit_of_work() as uow:
        assert uow.devices.get("d1") is None


def test_call_after_runs_after_commit_and_after_rollback(storage: SqlStorage) -> None:
    seen: list[str] = []
    with storage.unit_of_work() as uow:
        uow.call_after(lambda: seen.append("committed"))
        assert seen == []
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.call_after(lambda: seen.append("rolled back"))
        uow.call_after(lambda: 1 / 0)  # a failing hook is logged, not raised
        raise RuntimeError("boom")
    assert seen == ["committed", "rolled back"]
