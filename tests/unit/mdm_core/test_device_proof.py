"""Device proofs: every refusal, the happy paths, auditing and metrics of refusals."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from mdm_core.device.proof import DeviceProofVerifier, normalise_htu
from mdm_core.domain.errors import (
    BadSignature,
    BodyMismatch,
    DeviceNotActive,
    ExpiredCertificate,
    ExpiredProof,
    MalformedProof,
    NonceMismatch,
    ProofError,
    ReplayedProof,
    RevokedCertificate,
    UnknownDevice,
    UnsupportedAlgorithm,
    WrongProofType,
    WrongTarget,
)
from mdm_core.domain.model import DeviceStatus
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.helpers.device_keys import DeviceKey, hs256_with_public_key, new_jti, unsigned
from tests.helpers.enrolled import PUBLIC_URL, EnrolledDevice, enroll_device, make_core

URL = PUBLIC_URL + "/mdm/v1/checkin"
BODY = b'{"posture": {"os_version": "15.1"}}'
AUD = "https://gateway.test"


def _claims(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "htm": "POST",
        "htu": URL,
        "iat": int(time.time()),
        "jti": new_jti(),
        "bh": "x",
    }
    base.update(kw)
    return base


def _refused(core: MdmCore, token: str, exc: type[ProofError], **kw: object) -> ProofError:
    with pytest.raises(exc) as info:
        core.proofs.verify(
            token,
            method=str(kw.get("method", "POST")),
            url=str(kw.get("url", URL)),
            body=kw.get("body", BODY),  # type: ignore[arg-type]
        )
    return info.value


def _refusals(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "posture_device_proof_refusals_total", {"kind": "request", "reason": reason}
    )
    return value or 0.0


# --- happy path -------------------------------------------------------------------------------


def test_valid_proof_authenticates(core: MdmCore, dev: EnrolledDevice) -> None:
    result = core.proofs.verify(
        dev.request_proof("POST", URL, BODY), method="post", url=URL, body=BODY
    )
    assert result.device.id == dev.device_id
    assert result.device.status is DeviceStatus.ACTIVE
    assert result.cert_serial == dev.result.device.cert_serial
    assert result.key_thumbprint == dev.result.device.key_thumbprint
    assert result.cert_not_after is not None
    assert timedelta(days=29) < result.cert_not_after - datetime.now(UTC) <= timedelta(days=30)


def test_url_normalisation_query_and_default_port(core: MdmCore, dev: EnrolledDevice) -> None:
    proof = dev.request_proof("GET", "https://MDM.test:443/mdm/v1/checkin", b"")
    core.proofs.verify(proof, method="GET", url=URL + "?wait=30", body=b"")
    assert normalise_htu("HTTP://Host:80/p?q#f") == "http://host/p"
    assert normalise_htu("https://h:8443") == "https://h:8443/"
    with pytest.raises(ValueError):
        normalise_htu("ftp://h/p")


# --- refusals ---------------------------------------------------------------------------------


def test_replay_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    proof = dev.request_proof("POST", URL, BODY)
    core.proofs.verify(proof, method="POST", url=URL, body=BODY)
    before = _refusals("replayed_proof")
    _refused(core, proof, ReplayedProof)
    assert _refusals("replayed_proof") == before + 1


def test_alg_none_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    token = unsigned({"typ": "device-proof+jwt", "kid": dev.device_id}, _claims())
    _refused(core, token, UnsupportedAlgorithm)


def test_hs256_signed_with_the_public_key_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    token = hs256_with_public_key(
        dev.key, {"typ": "device-proof+jwt", "kid": dev.device_id}, _claims()
    )
    _refused(core, token, UnsupportedAlgorithm)


def test_hmac_signature_under_an_es256_header_is_refused(
    core: MdmCore, dev: EnrolledDevice
) -> None:
    forged = hs256_with_public_key(
        dev.key, {"typ": "device-proof+jwt", "kid": dev.device_id}, _claims()
    )
    genuine_header = dev.request_proof("POST", URL, BODY).split(".")[0]
    _, payload, sig = forged.split(".")
    _refused(core, f"{genuine_header}.{payload}.{sig}", BadSignature)


def test_other_key_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    proof = DeviceKey.generate().request_proof(dev.device_id, "POST", URL, BODY)
    _refused(core, proof, BadSignature)


def test_tampered_payload_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    header, _, sig = dev.request_proof("POST", URL, BODY).split(".")
    other_payload = dev.request_proof("GET", URL, BODY).split(".")[1]
    _refused(core, f"{header}.{other_payload}.{sig}", BadSignature)


@pytest.mark.parametrize(
    ("header", "exc"),
    [
        ({"typ": "JWT"}, WrongProofType),
        ({"typ": "device-login+jwt"}, WrongProofType),
        ({"typ": None}, WrongProofType),
        ({"kid": None}, MalformedProof),
        ({"kid": "x" * 65}, MalformedProof),
        ({"kid": "no such device"}, MalformedProof),
        ({"kid": "unknown-device"}, UnknownDevice),
    ],
)
def test_bad_header_is_refused(
    core: MdmCore, dev: EnrolledDevice, header: dict[str, object], exc: type[ProofError]
) -> None:
    _refused(core, dev.request_proof("POST", URL, BODY, header=header), exc)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000, "e30", "....."])
def test_not_a_jwt_is_refused(core: MdmCore, token: str) -> None:
    _refused(core, token, MalformedProof)


def test_iat_too_old_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    old = int(time.time()) - 126  # max age 120 s + leeway 5 s
    _refused(core, dev.request_proof("POST", URL, BODY, iat=old), ExpiredProof)


def test_iat_in_the_future_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    future = int(time.time()) + 30
    _refused(core, dev.request_proof("POST", URL, BODY, iat=future), ExpiredProof)


def test_iat_within_leeway_is_accepted(core: MdmCore, dev: EnrolledDevice) -> None:
    proof = dev.request_proof("POST", URL, BODY, iat=int(time.time()) + 3)
    core.proofs.verify(proof, method="POST", url=URL, body=BODY)


@pytest.mark.parametrize(
    ("claims", "exc"),
    [
        ({"iat": 1.5e9}, MalformedProof),
        ({"iat": "now"}, MalformedProof),
        ({"iat": None}, MalformedProof),
        ({"jti": None}, MalformedProof),
        ({"jti": "short"}, MalformedProof),
        ({"jti": "!" * 30}, MalformedProof),
        ({"bh": None}, MalformedProof),
        ({"htm": None}, MalformedProof),
        ({"htu": None}, MalformedProof),
        ({"htm": "GET"}, WrongTarget),
        ({"htm": "post"}, WrongTarget),
        ({"htu": PUBLIC_URL + "/mdm/v1/renew"}, WrongTarget),
        ({"htu": "https://evil.test/mdm/v1/checkin"}, WrongTarget),
        ({"htu": "http://mdm.test/mdm/v1/checkin"}, WrongTarget),
        ({"htu": "https://mdm.test:8443/mdm/v1/checkin"}, WrongTarget),
        ({"htu": "not a url"}, WrongTarget),
        ({"htu": 42}, WrongTarget),
        ({"bh": 42}, BodyMismatch),
    ],
)
def test_bad_claims_are_refused(
    core: MdmCore, dev: EnrolledDevice, claims: dict[str, object], exc: type[ProofError]
) -> None:
    _refused(core, dev.request_proof("POST", URL, BODY, claims=claims), exc)


def test_body_tamper_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    proof = dev.request_proof("POST", URL, BODY)
    _refused(core, proof, BodyMismatch, body=BODY.replace(b"15.1", b"17.4"))
    _refused(core, dev.request_proof("POST", URL, BODY), BodyMismatch, body=BODY + b" ")


def test_revoked_certificate_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    with core.storage.unit_of_work() as uow:
        uow.certificates.revoke(
            dev.result.device.cert_serial or "", reason="test", at=datetime.now(UTC)
        )
    _refused(core, dev.request_proof("POST", URL, BODY), RevokedCertificate)


def test_expired_certificate_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    later = datetime.now(UTC) + timedelta(days=31)
    verifier = DeviceProofVerifier(
        core.storage, max_age=timedelta(minutes=2), leeway=timedelta(0), clock=lambda: later
    )
    proof = dev.request_proof("POST", URL, BODY, iat=int(later.timestamp()))
    with pytest.raises(ExpiredCertificate):
        verifier.verify(proof, method="POST", url=URL, body=BODY)


@pytest.mark.parametrize("status", [DeviceStatus.RETIRED, DeviceStatus.WIPED])
def test_retired_or_wiped_device_is_refused(
    core: MdmCore, dev: EnrolledDevice, status: DeviceStatus
) -> None:
    with core.storage.unit_of_work() as uow:
        uow.devices.update_status(dev.device_id, status, reason="test", at=datetime.now(UTC))
    err = _refused(core, dev.request_proof("POST", URL, BODY), DeviceNotActive)
    assert err.status == 403


def test_revoked_device_is_refused(core: MdmCore, dev: EnrolledDevice) -> None:
    core.enrollment.revoke_device(dev.device_id, actor="admin:test", reason="lost")
    _refused(core, dev.request_proof("POST", URL, BODY), RevokedCertificate)


@pytest.mark.parametrize("status", [DeviceStatus.QUARANTINED, DeviceStatus.PENDING_VERIFICATION])
def test_quarantined_devices_are_authenticated_with_their_status(
    core: MdmCore, dev: EnrolledDevice, status: DeviceStatus
) -> None:
    with core.storage.unit_of_work() as uow:
        uow.devices.update_status(dev.device_id, status, reason="test", at=datetime.now(UTC))
    result = core.proofs.verify(
        dev.request_proof("POST", URL, BODY), method="POST", url=URL, body=BODY
    )
    assert result.device.status is status


# --- audit, transactions, caching -------------------------------------------------------------


def test_refusal_is_audited_even_when_the_callers_transaction_rolls_back(
    core: MdmCore, dev: EnrolledDevice
) -> None:
    proof = dev.request_proof("POST", URL, BODY)
    with pytest.raises(BodyMismatch), core.storage.unit_of_work() as uow:
        core.proofs.verify(proof, method="POST", url=URL, body=b"other", uow=uow)
    with core.storage.unit_of_work() as uow:
        (entry,) = uow.audit.recent(dev.device_id, limit=1)
    assert entry.outcome == "refused"
    assert entry.action == "device_proof.request"
    assert entry.detail["reason"] == "body_mismatch"
    assert proof not in str(entry.detail)  # the token itself is never written down


def test_unknown_device_refusal_is_audited(core: MdmCore) -> None:
    proof = DeviceKey.generate().request_proof("ghost-device", "POST", URL, BODY)
    _refused(core, proof, UnknownDevice)
    with core.storage.unit_of_work() as uow:
        (entry,) = uow.audit.recent("ghost-device")
    assert entry.detail["reason"] == "unknown_device"


def test_replay_record_belongs_to_the_callers_transaction(
    core: MdmCore, dev: EnrolledDevice
) -> None:
    proof = dev.request_proof("POST", URL, BODY)
    with pytest.raises(RuntimeError), core.storage.unit_of_work() as uow:
        core.proofs.verify(proof, method="POST", url=URL, body=BODY, uow=uow)
        raise RuntimeError("the check-in failed after verification")
    # nothing committed: the request never happened, so the device may retry it
    core.proofs.verify(proof, method="POST", url=URL, body=BODY)
    _refused(core, proof, ReplayedProof)


def test_new_key_after_re_enrollment(core: MdmCore, dev: EnrolledDevice) -> None:
    core.proofs.verify(dev.request_proof("POST", URL, BODY), method="POST", url=URL, body=BODY)
    again = enroll_device(core, "alice", key=DeviceKey.generate())  # a second device
    assert again.device_id != dev.device_id
    from mdm_core.device.enrollment import EnrollmentRequest
    from mdm_core.posture.model import Ownership, Platform

    new_key = DeviceKey.generate()
    token = core.enrollment.create_token(
        "alice", Ownership.CORPORATE, None, timedelta(hours=1), "admin:test"
    )
    core.enrollment.enroll(
        EnrollmentRequest(
            csr_pem=new_key.csr_pem(),
            platform=Platform.MACOS,
            ownership=Ownership.CORPORATE,
            token=token,
            device_id=dev.device_id,
        )
    )
    _refused(core, dev.request_proof("POST", URL, BODY), BadSignature)  # old key
    proof = new_key.request_proof(dev.device_id, "POST", URL, BODY)
    assert core.proofs.verify(proof, method="POST", url=URL, body=BODY).device.id == dev.device_id


def test_expired_replay_rows_are_purged_periodically(core: MdmCore, dev: EnrolledDevice) -> None:
    now = [datetime.now(UTC)]
    verifier = DeviceProofVerifier(
        core.storage,
        max_age=timedelta(minutes=2),
        leeway=timedelta(0),
        clock=lambda: now[0],
        purge_interval=timedelta(minutes=1),
    )
    first = dev.request_proof("POST", URL, BODY, iat=int(now[0].timestamp()))
    verifier.verify(first, method="POST", url=URL, body=BODY)
    now[0] += timedelta(minutes=5)
    second = dev.request_proof("POST", URL, BODY, iat=int(now[0].timestamp()))
    verifier.verify(second, method="POST", url=URL, body=BODY)  # schedules the purge
    from sqlalchemy import func, select

    from mdm_core.storage.sql.tables import used_proofs

    with core.database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(used_proofs)).scalar_one() == 1


# --- login proofs ---------------------------------------------------------------------------


def test_login_proof_with_posture(core: MdmCore, dev: EnrolledDevice) -> None:
    proof = dev.login_proof(audience=AUD, nonce="n-123", posture={"storage_encrypted": True})
    result = core.proofs.verify_login_proof(proof, audience=AUD, nonce="n-123")
    assert result.device.device.id == dev.device_id
    assert result.posture == {"storage_encrypted": True}
    assert abs(result.issued_at.timestamp() - time.time()) < 5
    with pytest.raises(ReplayedProof):
        core.proofs.verify_login_proof(proof, audience=AUD, nonce="n-123")


def test_login_proof_without_posture(core: MdmCore, dev: EnrolledDevice) -> None:
    result = core.proofs.verify_login_proof(
        dev.login_proof(audience=AUD, nonce="n"), audience=AUD, nonce="n"
    )
    assert result.posture is None


@pytest.mark.parametrize(
    ("kw", "exc"),
    [
        ({"audience": "https://other.test"}, WrongTarget),
        ({"claims": {"aud": [AUD, "https://other.test"]}}, WrongTarget),
        ({"nonce": "other-nonce"}, NonceMismatch),
        ({"claims": {"nonce": 7}}, NonceMismatch),
        ({"claims": {"nonce": None}}, MalformedProof),
        ({"claims": {"aud": None}}, MalformedProof),
        ({"claims": {"posture": ["not", "an", "object"]}}, MalformedProof),
        ({"header": {"typ": "device-proof+jwt"}}, WrongProofType),
        ({"iat": int(time.time()) - 3600}, ExpiredProof),
    ],
)
def test_login_proof_refusals(
    core: MdmCore, dev: EnrolledDevice, kw: dict[str, object], exc: type[ProofError]
) -> None:
    args: dict[str, object] = {"audience": AUD, "nonce": "n-123"}
    args.update(kw)
    if "iat" in kw:
        args["iat"] = int(time.time()) - 3600
    proof = dev.login_proof(**args)  # type: ignore[arg-type]
    with pytest.raises(exc):
        core.proofs.verify_login_proof(proof, audience=AUD, nonce="n-123")


def test_request_proof_is_not_a_login_proof(core: MdmCore, dev: EnrolledDevice) -> None:
    with pytest.raises(WrongProofType):
        core.proofs.verify_login_proof(
            dev.request_proof("POST", URL, BODY), audience=AUD, nonce="n"
        )


def test_key_cache_is_bounded_and_keeps_working(core: MdmCore) -> None:
    verifier = DeviceProofVerifier(
        core.storage, max_age=timedelta(minutes=2), leeway=timedelta(0), key_cache_size=1
    )
    devices = [enroll_device(core, f"user{i}") for i in range(3)]
    for _ in range(2):
        for d in devices:
            proof = d.request_proof("POST", URL, BODY)
            assert (
                verifier.verify(proof, method="POST", url=URL, body=BODY).device.id == d.device_id
            )
    assert len(verifier._keys._keys) == 1


def test_with_redis_request_proofs_stay_in_sql_and_login_proofs_go_to_redis(
    sqlite_database: Database, tmp_path: Path, redis_url: str
) -> None:
    """Request proofs are remembered in the unit of work that verifies them (one statement
    with the device read on PostgreSQL, no Redis round trip); login proofs in Redis."""
    from sqlalchemy import func, select

    from mdm_core.storage.sql.tables import used_proofs

    core = make_core(sqlite_database, tmp_path, redis_url=redis_url)

    def in_sql() -> int:
        with core.database.transaction() as conn:
            return int(conn.execute(select(func.count()).select_from(used_proofs)).scalar_one())

    try:
        dev = enroll_device(core, "alice")
        proof = dev.request_proof("POST", URL, BODY)
        core.proofs.verify(proof, method="POST", url=URL, body=BODY)
        _refused(core, proof, ReplayedProof)
        assert in_sql() == 1
        login = dev.login_proof(audience=AUD, nonce="n-redis")
        core.proofs.verify_login_proof(login, audience=AUD, nonce="n-redis")
        with pytest.raises(ReplayedProof):
            core.proofs.verify_login_proof(login, audience=AUD, nonce="n-redis")
        assert in_sql() == 1  # the login proof's jti is in Redis
        assert core.proofs.purge_expired() == 0  # nothing expired yet, both stores asked
    finally:
        core.close()
