"""The device CA: key at rest, CSR checks, issued certificate profile, certificate verification."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm_core.device.ca import (
    CA_KEY_ID,
    CertificateAuthority,
    jwk_thumbprint,
    load_or_create_ca,
)
from mdm_core.domain.errors import (
    BadCSR,
    BadSignature,
    ConfigurationError,
    ExpiredCertificate,
    MalformedProof,
    RevokedCertificate,
)
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.certauth import CertificateRecord
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from tests.helpers.device_keys import DeviceKey


@pytest.fixture
def storage(sqlite_database: Database) -> SqlStorage:
    return SqlStorage(sqlite_database)


@pytest.fixture
def ca(storage: SqlStorage, tmp_path: Path) -> CertificateAuthority:
    return load_or_create_ca(storage, data_dir=tmp_path, dev_mode=False, passphrase="s3cret!")


def _record(storage: SqlStorage, ca: CertificateAuthority, device_id: str = "dev-1") -> str:
    """Issue a certificate for a stored device and record it; returns the PEM."""
    key = DeviceKey.generate()
    issued = ca.issue_device_certificate(key.csr_pem(), device_id, "alice", timedelta(days=30))
    now = datetime.now(UTC)
    with storage.unit_of_work() as uow:
        uow.devices.create(
            DeviceRecord(
                id=device_id,
                user_id="alice",
                platform=Platform.MACOS,
                ownership=Ownership.CORPORATE,
                status=DeviceStatus.ACTIVE,
                serial_number=None,
                cert_serial=issued.serial,
                key_thumbprint=issued.public_key.thumbprint,
                enrollment_generation=1,
                enrolled_at=now,
                last_checkin_at=None,
            ),
            public_key=issued.public_key.der,
        )
        uow.certificates.add(
            CertificateRecord(
                serial=issued.serial,
                device_id=device_id,
                user_id="alice",
                key_thumbprint=issued.public_key.thumbprint,
                not_before=issued.not_before,
                not_after=issued.not_after,
                pem=issued.pem,
            )
        )
    return issued.pem


# --- key at rest ------------------------------------------------------------------------------


def test_generated_once_stored_encrypted_and_reloaded(storage: SqlStorage, tmp_path: Path) -> None:
    first = load_or_create_ca(storage, data_dir=tmp_path, dev_mode=False, passphrase="pw-1")
    with storage.unit_of_work() as uow:
        stored = uow.ca_keys.get_ca_key(CA_KEY_ID)
    assert stored is not None
    assert "BEGIN ENCRYPTED PRIVATE KEY" in stored.encrypted_key_pem
    again = load_or_create_ca(storage, data_dir=tmp_path, dev_mode=False, passphrase="pw-1")
    assert again.certificate_pem == first.certificate_pem
    cert = first.certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_wrong_passphrase_is_refused(storage: SqlStorage, tmp_path: Path) -> None:
    load_or_create_ca(storage, data_dir=tmp_path, dev_mode=False, passphrase="right")
    with pytest.raises(ConfigurationError, match="passphrase"):
        load_or_create_ca(storage, data_dir=tmp_path, dev_mode=False, passphrase="wrong")


def test_no_passphrase_outside_dev_mode_is_refused(storage: SqlStorage, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ca.passphrase is required"):
        load_or_create_ca(storage, data_dir=tmp_path, dev_mode=False, passphrase=None)
    with storage.unit_of_work() as uow:
        assert uow.ca_keys.get_ca_key(CA_KEY_ID) is None


def test_dev_mode_generates_a_private_passphrase_file(
    storage: SqlStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_or_create_ca(storage, data_dir=tmp_path / "d", dev_mode=True, passphrase=None)
    path = tmp_path / "d" / "ca-passphrase"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text()) >= 40
    assert "dev mode" in caplog.text
    again = load_or_create_ca(storage, data_dir=tmp_path / "d", dev_mode=True, passphrase=None)
    assert again.certificate_pem == first.certificate_pem


def _write_ca(tmp_path: Path, key: object, *, is_ca: bool = True) -> tuple[Path, Path]:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_path, cert_path = tmp_path / "ca.key", tmp_path / "ca.crt"
    key_path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"file-pw"),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_load_from_pem_files(storage: SqlStorage, tmp_path: Path) -> None:
    key_path, cert_path = _write_ca(tmp_path, ec.generate_private_key(ec.SECP384R1()))
    ca = load_or_create_ca(
        storage,
        data_dir=tmp_path,
        dev_mode=False,
        passphrase="file-pw",
        key_path=key_path,
        cert_path=cert_path,
    )
    assert ca.certificate_pem == cert_path.read_text()
    issued = ca.issue_device_certificate(
        DeviceKey.generate().csr_pem(), "d1", "alice", timedelta(days=1)
    )
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    cert.verify_directly_issued_by(ca.certificate)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)


@pytest.mark.parametrize(
    "case",
    ["only_key", "wrong_pw", "rsa", "not_ca", "missing_file"],
)
def test_bad_pem_configuration_is_refused(storage: SqlStorage, tmp_path: Path, case: str) -> None:
    key: object = ec.generate_private_key(ec.SECP256R1())
    if case == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path, cert_path = _write_ca(tmp_path, key, is_ca=case != "not_ca")
    kwargs: dict[str, object] = {"key_path": key_path, "cert_path": cert_path}
    passphrase = "wrong" if case == "wrong_pw" else "file-pw"
    if case == "only_key":
        kwargs = {"key_path": key_path}
    if case == "missing_file":
        kwargs["cert_path"] = tmp_path / "absent.crt"
    with pytest.raises(ConfigurationError):
        load_or_create_ca(
            storage,
            data_dir=tmp_path,
            dev_mode=False,
            passphrase=passphrase,
            **kwargs,  # type: ignore[arg-type]
        )


# --- issuing ----------------------------------------------------------------------------------


def test_issued_certificate_profile(ca: CertificateAuthority) -> None:
    key = DeviceKey.generate()
    now = datetime.now(UTC)
    issued = ca.issue_device_certificate(
        key.csr_pem("ignored"), "dev-1", "alice", timedelta(days=7)
    )
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:posture:device:dev-1",
        "urn:posture:user:alice",
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert format(cert.serial_number, "x") == issued.serial
    assert cert.serial_number.bit_length() > 100  # random, not sequential
    assert timedelta(days=7) - timedelta(minutes=1) < cert.not_valid_after_utc - now
    assert cert.not_valid_after_utc - now <= timedelta(days=7, seconds=5)
    assert cert.public_key() == key.private_key.public_key()
    assert issued.public_key.thumbprint == jwk_thumbprint(key.private_key.public_key())


def test_thumbprint_matches_rfc7638_example_shape() -> None:
    key = DeviceKey.generate().private_key.public_key()
    thumb = jwk_thumbprint(key)
    assert len(thumb) == 43 and "=" not in thumb
    assert thumb == jwk_thumbprint(key)


def _tampered_csr() -> str:
    key = DeviceKey.generate()
    der = x509.load_pem_x509_csr(key.csr_pem("device").encode()).public_bytes(
        serialization.Encoding.DER
    )
    bad = der.replace(b"device", b"devicf")
    return x509.load_der_x509_csr(bad).public_bytes(serialization.Encoding.PEM).decode()


def _csr_for(key: object) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        ("not a csr", "not a PEM"),
        ("", "not a PEM"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", "PEM"),
        ("A" * 9000, "larger"),
        (_tampered_csr(), "does not verify"),
        (_csr_for(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (_csr_for(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "P-256"),
    ],
)
def test_bad_csr_is_refused(ca: CertificateAuthority, csr: str, message: str) -> None:
    with pytest.raises(BadCSR, match=message):
        ca.issue_device_certificate(csr, "dev-1", "alice", timedelta(days=1))


# --- verifying (mTLS) -------------------------------------------------------------------------


def test_verify_device_certificate_pem_and_der(
    storage: SqlStorage, ca: CertificateAuthority
) -> None:
    pem = _record(storage, ca)
    identity = ca.verify_device_certificate(pem)
    assert (identity.device_id, identity.user_id) == ("dev-1", "alice")
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert ca.verify_device_certificate(der) == identity


def test_verify_refuses_revoked_and_unknown(storage: SqlStorage, ca: CertificateAuthority) -> None:
    pem = _record(storage, ca)
    serial = ca.verify_device_certificate(pem).serial
    with storage.unit_of_work() as uow:
        uow.certificates.revoke(serial, reason="lost", at=datetime.now(UTC))
    with pytest.raises(RevokedCertificate):
        ca.verify_device_certificate(pem)
    never_recorded = ca.issue_device_certificate(
        DeviceKey.generate().csr_pem(), "dev-1", "alice", timedelta(days=1)
    )
    with pytest.raises(RevokedCertificate, match="unknown"):
        ca.verify_device_certificate(never_recorded.pem)


def test_verify_refuses_expired_and_not_yet_valid(
    storage: SqlStorage, ca: CertificateAuthority
) -> None:
    pem = _record(storage, ca)
    with pytest.raises(ExpiredCertificate):
        ca.verify_device_certificate(pem, now=datetime.now(UTC) + timedelta(days=31))
    with pytest.raises(ExpiredCertificate):
        ca.verify_device_certificate(pem, now=datetime.now(UTC) - timedelta(hours=1))


def test_verify_refuses_other_ca_and_garbage(
    storage: SqlStorage, ca: CertificateAuthority, tmp_path: Path
) -> None:
    other_db = Database(f"sqlite:///{tmp_path}/other.sqlite3")
    other_db.migrate()
    try:
        other = load_or_create_ca(
            SqlStorage(other_db), data_dir=tmp_path, dev_mode=False, passphrase="x"
        )
        forged = other.issue_device_certificate(
            DeviceKey.generate().csr_pem(), "dev-1", "alice", timedelta(days=1)
        )
    finally:
        other_db.dispose()
    _record(storage, ca)
    with pytest.raises(BadSignature):
        ca.verify_device_certificate(forged.pem)
    with pytest.raises(MalformedProof):
        ca.verify_device_certificate(b"\x30\x03garbage")
    with pytest.raises(MalformedProof):
        ca.verify_device_certificate(ca.certificate_pem)  # the CA itself is no device
