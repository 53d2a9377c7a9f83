"""Enrollment: tokens, automated enrollment by serial, BYOD notice, re-enrollment, renewal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import func, select, text

from mdm_core.bus.events import EventType
from mdm_core.device.enrollment import UNASSIGNED_USER, EnrollmentRequest, hash_token
from mdm_core.device.proof import AuthenticatedDevice
from mdm_core.domain.errors import (
    BadCSR,
    BadRequest,
    DeviceMismatch,
    EnrollmentError,
    InvalidToken,
    NotFound,
    NoticeNotAccepted,
    OwnershipMismatch,
    PlatformMismatch,
    TokenExpired,
    TokenUsed,
    UnregisteredSerial,
)
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql import tables
from mdm_core.storage.sql.database import Database
from tests.helpers.device_keys import DeviceKey
from tests.helpers.enrolled import enroll_device, make_core

CORP, BYOD = Ownership.CORPORATE, Ownership.BYOD
HOUR = timedelta(hours=1)


def _request(key: DeviceKey | None = None, **kw: Any) -> EnrollmentRequest:
    values: dict[str, Any] = {
        "csr_pem": (key or DeviceKey.generate()).csr_pem(),
        "platform": Platform.MACOS,
        "ownership": CORP,
    }
    values.update(kw)
    return EnrollmentRequest(**values)


def _snapshot(core: MdmCore) -> dict[str, Any]:
    """Row counts and token use of the identity tables (to prove a refusal changed nothing)."""
    with core.database.transaction() as conn:
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (tables.devices, tables.certificates, tables.outbox, tables.registered_serials)
        }
        counts["used_tokens"] = conn.execute(
            select(func.count())
            .select_from(tables.enrollment_tokens)
            .where(tables.enrollment_tokens.c.used_at.is_not(None))
        ).scalar_one()
    return counts


def _events(core: MdmCore, subject: str) -> list[str]:
    with core.database.transaction() as conn:
        return [
            row.type
            for row in conn.execute(
                select(tables.outbox.c.type)
                .where(tables.outbox.c.subject == subject)
                .order_by(tables.outbox.c.id)
            )
        ]


# --- tokens -----------------------------------------------------------------------------------


def test_token_enrollment_issues_identity_event_and_audit(core: MdmCore) -> None:
    key = DeviceKey.generate()
    token = core.enrollment.create_token("alice", CORP, Platform.MACOS, HOUR, "admin:root")
    result = core.enrollment.enroll(_request(key, token=token, serial_number="C02XYZ"))
    device = result.device
    assert (device.user_id, device.status, device.enrollment_generation) == (
        "alice",
        DeviceStatus.ACTIVE,
        1,
    )
    assert device.serial_number == "C02XYZ"
    cert = x509.load_pem_x509_certificate(result.certificate_pem.encode())
    cert.verify_directly_issued_by(core.ca.certificate)
    assert cert.public_key() == key.private_key.public_key()
    assert result.ca_certificate_pem == core.ca.certificate_pem
    assert result.checkin_url == "https://mdm.test/mdm/v1/checkin"
    assert _events(core, device.id) == [EventType.DEVICE_ENROLLED]
    with core.storage.unit_of_work() as uow:
        (entry,) = uow.audit.recent(device.id)
        assert entry.action == "device.enroll" and entry.outcome == "ok"
        record = uow.certificates.get(device.cert_serial or "")
        assert record is not None and record.revoked_at is None


def test_only_the_token_hash_is_stored(core: MdmCore) -> None:
    token = core.enrollment.create_token("alice", BYOD, None, HOUR, "admin:root")
    assert len(token) >= 43
    with core.database.transaction() as conn:
        dump = " ".join(str(r) for r in conn.execute(select(tables.enrollment_tokens)))
        audit = " ".join(str(r) for r in conn.execute(select(tables.audit_log)))
    assert token not in dump and token not in audit
    assert hash_token(token) in dump


def test_token_is_single_use_and_refusal_changes_nothing(core: MdmCore) -> None:
    token = core.enrollment.create_token("alice", CORP, None, HOUR, "admin:root")
    core.enrollment.enroll(_request(token=token))
    before = _snapshot(core)
    with pytest.raises(TokenUsed):
        core.enrollment.enroll(_request(token=token))
    assert _snapshot(core) == before


def test_expired_and_unknown_tokens(core: MdmCore, sqlite_database: Database) -> None:
    token = core.enrollment.create_token("alice", CORP, None, timedelta(seconds=1), "admin:root")
    with core.database.transaction() as conn:
        conn.execute(
            tables.enrollment_tokens.update().values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
    before = _snapshot(core)
    with pytest.raises(TokenExpired):
        core.enrollment.enroll(_request(token=token))
    with pytest.raises(InvalidToken):
        core.enrollment.enroll(_request(token="not-a-token"))
    with pytest.raises(InvalidToken):
        core.enrollment.enroll(_request())  # neither token nor serial
    assert _snapshot(core) == before


def test_bad_csr_leaves_the_token_unspent(core: MdmCore) -> None:
    token = core.enrollment.create_token("alice", CORP, None, HOUR, "admin:root")
    before = _snapshot(core)
    with pytest.raises(BadCSR):
        core.enrollment.enroll(_request(token=token, csr_pem="garbage"))
    assert _snapshot(core) == before
    core.enrollment.enroll(_request(token=token))  # still good


@pytest.mark.parametrize(
    ("token_args", "request_args", "exc"),
    [
        ((BYOD, None), {"ownership": CORP}, OwnershipMismatch),
        (
            (CORP, None),
            {"ownership": BYOD, "privacy_notice_accepted": "byod-default"},
            OwnershipMismatch,
        ),
        ((CORP, Platform.IOS), {"platform": Platform.ANDROID}, PlatformMismatch),
    ],
)
def test_token_binds_ownership_and_platform(
    core: MdmCore, token_args: tuple[Any, Any], request_args: dict[str, Any], exc: type[Exception]
) -> None:
    token = core.enrollment.create_token("alice", *token_args, HOUR, "admin:root")
    before = _snapshot(core)
    with pytest.raises(exc):
        core.enrollment.enroll(_request(token=token, **request_args))
    assert _snapshot(core) == before


@pytest.mark.parametrize(
    ("user", "ttl"),
    [("", HOUR), ("bad user", HOUR), ("alice", timedelta(0)), ("alice", timedelta(days=91))],
)
def test_create_token_validates(core: MdmCore, user: str, ttl: timedelta) -> None:
    with pytest.raises(BadRequest):
        core.enrollment.create_token(user, CORP, None, ttl, "admin:root")


# --- BYOD notice --------------------------------------------------------------------------


def test_byod_requires_the_notice_in_force(core: MdmCore) -> None:
    notice = core.enrollment.required_notice(BYOD)
    assert notice == core.privacy.for_ownership(BYOD).id
    assert core.enrollment.required_notice(CORP) is None
    token = core.enrollment.create_token("alice", BYOD, None, HOUR, "admin:root")
    before = _snapshot(core)
    for accepted in (None, "corporate-default", notice + "x"):
        with pytest.raises(NoticeNotAccepted):
            core.enrollment.enroll(
                _request(token=token, ownership=BYOD, privacy_notice_accepted=accepted)
            )
    assert _snapshot(core) == before
    result = core.enrollment.enroll(
        _request(token=token, ownership=BYOD, privacy_notice_accepted=notice)
    )
    assert result.device.ownership is BYOD


# --- automated enrollment by serial ---------------------------------------------------------


def test_unregistered_serial_cannot_enroll_without_token(core: MdmCore) -> None:
    before = _snapshot(core)
    with pytest.raises(UnregisteredSerial):
        core.enrollment.enroll(_request(serial_number="UNKNOWN1"))
    assert _snapshot(core) == before


def test_registered_serial_enrolls_as_corporate_only(core: MdmCore) -> None:
    secret = core.enrollment.register_serial(
        "SN-1", Platform.MACOS, "bob", "admin:root"
    ).enrollment_secret
    with pytest.raises(OwnershipMismatch):
        core.enrollment.enroll(
            _request(
                serial_number="SN-1",
                enrollment_secret=secret,
                ownership=BYOD,
                privacy_notice_accepted="byod-default",
            )
        )
    with pytest.raises(PlatformMismatch):
        core.enrollment.enroll(
            _request(serial_number="SN-1", enrollment_secret=secret, platform=Platform.WINDOWS)
        )
    result = core.enrollment.enroll(_request(serial_number="SN-1", enrollment_secret=secret))
    assert (result.device.user_id, result.device.ownership) == ("bob", CORP)
    with core.storage.unit_of_work() as uow:
        reg = uow.serials.get("SN-1")
    assert reg is not None and reg.device_id == result.device.id


def test_factory_reset_re_enrolls_by_serial_keeping_the_device_id(core: MdmCore) -> None:
    secret = core.enrollment.register_serial(
        "SN-2", Platform.WINDOWS, "carol", "admin:root"
    ).enrollment_secret
    first = core.enrollment.enroll(
        _request(serial_number="SN-2", enrollment_secret=secret, platform=Platform.WINDOWS)
    )
    new_key = DeviceKey.generate()
    second = core.enrollment.enroll(
        _request(new_key, serial_number="SN-2", enrollment_secret=secret, platform=Platform.WINDOWS)
    )
    assert second.re_enrolled and second.device.id == first.device.id
    assert second.device.enrollment_generation == 2
    assert second.device.key_thumbprint != first.device.key_thumbprint
    assert second.revoked_serial == first.device.cert_serial
    with core.storage.unit_of_work() as uow:
        assert uow.certificates.is_revoked(first.device.cert_serial or "")
        assert not uow.certificates.is_revoked(second.device.cert_serial or "")
    assert _events(core, first.device.id) == [
        EventType.DEVICE_ENROLLED,
        EventType.DEVICE_RE_ENROLLED,
    ]


def test_serial_without_user_enrolls_unassigned(core: MdmCore) -> None:
    secret = core.enrollment.register_serial(
        "SN-3", Platform.LINUX, None, "admin:root"
    ).enrollment_secret
    result = core.enrollment.enroll(
        _request(serial_number="SN-3", enrollment_secret=secret, platform=Platform.LINUX)
    )
    assert result.device.user_id == UNASSIGNED_USER


def test_retired_serial_device_comes_back_as_a_new_device(core: MdmCore) -> None:
    secret = core.enrollment.register_serial(
        "SN-4", Platform.MACOS, "dave", "admin:root"
    ).enrollment_secret
    first = core.enrollment.enroll(_request(serial_number="SN-4", enrollment_secret=secret))
    core.enrollment.revoke_device(first.device.id, actor="admin:root", reason="reissued")
    second = core.enrollment.enroll(_request(serial_number="SN-4", enrollment_secret=secret))
    assert second.device.id != first.device.id and not second.re_enrolled


def test_serial_reassigned_to_another_user_needs_the_old_device_revoked(core: MdmCore) -> None:
    secret = core.enrollment.register_serial(
        "SN-5", Platform.MACOS, "erin", "admin:root"
    ).enrollment_secret
    first = core.enrollment.enroll(_request(serial_number="SN-5", enrollment_secret=secret))
    secret = core.enrollment.register_serial(
        "SN-5", Platform.MACOS, "frank", "admin:root"
    ).enrollment_secret
    with pytest.raises(DeviceMismatch):
        core.enrollment.enroll(_request(serial_number="SN-5", enrollment_secret=secret))
    core.enrollment.revoke_device(first.device.id, actor="admin:root", reason="handed over")
    assert (
        core.enrollment.enroll(
            _request(serial_number="SN-5", enrollment_secret=secret)
        ).device.user_id
        == "frank"
    )


# --- re-enrollment ------------------------------------------------------------------------


def test_re_enroll_with_token_and_device_id(core: MdmCore) -> None:
    dev = enroll_device(core, "alice")
    with core.storage.unit_of_work() as uow:
        uow.devices.update_status(
            dev.device_id, DeviceStatus.QUARANTINED, reason="jailbroken", at=datetime.now(UTC)
        )
    token = core.enrollment.create_token("alice", CORP, None, HOUR, "admin:root")
    result = core.enrollment.enroll(_request(token=token, device_id=dev.device_id))
    assert result.re_enrolled and result.device.id == dev.device_id
    assert result.device.status is DeviceStatus.PENDING_VERIFICATION


def test_re_enroll_by_token_and_serial_of_the_same_user(core: MdmCore) -> None:
    dev = enroll_device(core, "alice", serial_number="SER-9")
    token = core.enrollment.create_token("alice", CORP, None, HOUR, "admin:root")
    result = core.enrollment.enroll(_request(token=token, serial_number="SER-9"))
    assert result.device.id == dev.device_id
    token = core.enrollment.create_token("bob", CORP, None, HOUR, "admin:root")
    other = core.enrollment.enroll(_request(token=token, serial_number="SER-9"))
    assert other.device.id != dev.device_id  # bob gets his own device, never alice's


@pytest.mark.parametrize("case", ["other_user", "retired", "unknown", "bad_id"])
def test_re_enroll_refusals(core: MdmCore, case: str) -> None:
    dev = enroll_device(core, "alice")
    if case == "retired":
        core.enrollment.revoke_device(dev.device_id, actor="admin:root", reason="x")
    user = "mallory" if case == "other_user" else "alice"
    device_id = {"unknown": "no-such-device", "bad_id": "bad id!"}.get(case, dev.device_id)
    token = core.enrollment.create_token(user, CORP, None, HOUR, "admin:root")
    before = _snapshot(core)
    with pytest.raises((DeviceMismatch, BadRequest)):
        core.enrollment.enroll(_request(token=token, device_id=device_id))
    assert _snapshot(core) == before


# --- renewal and revocation -----------------------------------------------------------------


def test_renew_replaces_the_certificate_and_keeps_the_status(core: MdmCore) -> None:
    dev = enroll_device(core, "alice")
    with core.storage.unit_of_work() as uow:
        device = uow.devices.update_status(
            dev.device_id, DeviceStatus.QUARANTINED, reason="x", at=datetime.now(UTC)
        )
    auth = AuthenticatedDevice(
        device=device, cert_serial=device.cert_serial or "", key_thumbprint=""
    )
    new_key = DeviceKey.generate()
    result = core.enrollment.renew(auth, new_key.csr_pem())
    assert result.device.status is DeviceStatus.QUARANTINED
    assert result.device.enrollment_generation == 1
    assert result.revoked_serial == device.cert_serial
    with core.storage.unit_of_work() as uow:
        assert uow.certificates.is_revoked(device.cert_serial or "")
    with pytest.raises(BadCSR):
        core.enrollment.renew(auth, "garbage")


def test_revoke_device(core: MdmCore) -> None:
    dev = enroll_device(core, "alice")
    revoked = core.enrollment.revoke_device(dev.device_id, actor="admin:root", reason="lost")
    assert revoked == [dev.result.device.cert_serial]
    with core.storage.unit_of_work() as uow:
        device = uow.devices.get(dev.device_id)
    assert device is not None and device.status is DeviceStatus.RETIRED
    assert EventType.CERTIFICATE_REVOKED in _events(core, dev.device_id)
    with pytest.raises(NotFound):
        core.enrollment.revoke_device("nope", actor="admin:root", reason="x")


def test_every_enrollment_error_is_machine_readable() -> None:
    for exc in (TokenUsed, TokenExpired, InvalidToken, BadCSR, NoticeNotAccepted):
        assert issubclass(exc, EnrollmentError)
        assert exc.reason and 400 <= exc.status < 500


# --- concurrency on PostgreSQL --------------------------------------------------------------


@pytest.fixture
def pg_core(postgres_server_url: str, tmp_path: Path) -> Iterator[MdmCore]:
    from tests.conftest import _fresh_postgres_db

    db = Database(_fresh_postgres_db(postgres_server_url))
    db.migrate()
    core = make_core(db, tmp_path)
    try:
        yield core
    finally:
        core.close()
        db.dispose()


def _race(
    core: MdmCore, req: EnrollmentRequest, barrier: threading.Barrier, outcomes: list[object]
) -> None:
    barrier.wait(timeout=10)
    try:
        outcomes.append(core.enrollment.enroll(req))
    except Exception as exc:  # collected and asserted by the test
        outcomes.append(exc)


@pytest.mark.postgres
def test_two_concurrent_redemptions_exactly_one_wins(pg_core: MdmCore) -> None:
    for _ in range(5):  # several rounds: the race must never let both through
        token = pg_core.enrollment.create_token("alice", CORP, None, HOUR, "admin:root")
        requests = [_request(token=token) for _ in range(2)]
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        threads = [
            threading.Thread(target=_race, args=(pg_core, r, barrier, outcomes)) for r in requests
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        losers = [o for o in outcomes if isinstance(o, Exception)]
        assert len(winners) == 1, outcomes
        assert len(losers) == 1 and isinstance(losers[0], TokenUsed), outcomes
    with pg_core.database.transaction() as conn:
        assert conn.execute(text("SELECT count(*) FROM devices")).scalar_one() == 5


def test_credentials_never_appear_in_a_request_repr() -> None:
    request = _request(token="tok-SECRET-1", serial_number="SN-9", enrollment_secret="sec-SECRET-2")
    assert "SECRET" not in repr(request) and "SN-9" in repr(request)
