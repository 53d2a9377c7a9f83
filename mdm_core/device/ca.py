"""The MDM certificate authority: device identity as short-lived X.509 certificates.

Owns the CA key pair and everything signed with it (RFC 5280 profile, ``cryptography``):

- **Key at rest.** On first start a P-256 CA key and a self-signed CA certificate are generated
  and stored in ``ca_keys``, the key as PKCS#8 encrypted with the configured passphrase
  (``BestAvailableEncryption``). In dev mode without a passphrase a random one is written to
  ``<data_dir>/ca-passphrase`` (mode 0600) and a warning is logged. Alternatively an existing
  CA is loaded from PEM files (``ca_key_path`` + ``ca_cert_path``; EC P-256 or P-384).
  The key is loaded **once** per process and kept as an object.
- **Issuing.** :meth:`CertificateAuthority.issue_device_certificate` checks the CSR (its
  signature proves possession of the key; the key must be EC P-256), ignores whatever subject
  and extensions the CSR asks for, and issues: subject ``CN=<device id>``, SAN URIs
  ``urn:posture:device:<id>`` and ``urn:posture:user:<user>``, a random serial, EKU
  ``clientAuth``, not a CA, short lifetime.
- **Verifying** a presented device certificate (mTLS at a reverse proxy):
  :meth:`CertificateAuthority.verify_device_certificate` checks issuer and signature, the
  validity window, the EKU, and that the serial is one we issued and have not revoked.

Revocation itself is a row in ``certificates`` (:mod:`mdm_core.storage.certauth`); the
device-proof verifier checks it on every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm_core.domain.errors import (
    BadCSR,
    BadSignature,
    ConfigurationError,
    ExpiredCertificate,
    MalformedProof,
    RevokedCertificate,
)
from mdm_core.storage.certauth import StoredCaKey
from mdm_core.storage.uow import Storage
from mdm_core.support.secret_file import load_or_create_secret

__all__ = [
    "CA_KEY_ID",
    "DEVICE_URN_PREFIX",
    "USER_URN_PREFIX",
    "CertificateAuthority",
    "CertificateIdentity",
    "check_ca_config",
    "DevicePublicKey",
    "IssuedCertificate",
    "jwk_thumbprint",
    "load_or_create_ca",
]

log = logging.getLogger(__name__)

CA_KEY_ID = "device-ca"
DEVICE_URN_PREFIX = "urn:posture:device:"
USER_URN_PREFIX = "urn:posture:user:"
#: Devices' clocks drift; a certificate valid from "now" would fail on a device a minute behind.
BACKDATE = timedelta(minutes=5)
CA_LIFETIME = timedelta(days=3650)
MAX_CSR_BYTES = 8 * 1024
MAX_CERT_BYTES = 16 * 1024

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK SHA-256 thumbprint of an EC public key (base64url, no padding)."""
    numbers = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public_key.curve.name]
    jwk = {
        "crv": crv,
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(size, "big")),
        "y": _b64url(numbers.y.to_bytes(size, "big")),
    }
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode("ascii")
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, slots=True)
class DevicePublicKey:
    """A device key taken from a CSR whose signature verified (proof of possession)."""

    key: ec.EllipticCurvePublicKey
    der: bytes  # SubjectPublicKeyInfo
    thumbprint: str  # RFC 7638


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    serial: str  # lowercase hex
    pem: str
    not_before: datetime
    not_after: datetime
    public_key: DevicePublicKey


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """Who a verified device certificate speaks for."""

    device_id: str
    user_id: str
    serial: str


def _signing_hash(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()


class CertificateAuthority:
    """Issues and verifies device certificates with a key loaded once.

    ``storage`` is used by :meth:`verify_device_certificate` for the revocation check.
    """

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        storage: Storage,
        clock: Clock = _utcnow,
    ) -> None:
        if private_key is None or certificate is None or storage is None:
            raise ValueError("CertificateAuthority needs a key, a certificate and a storage")
        if private_key.public_key() != certificate.public_key():
            raise ConfigurationError("the CA key does not match the CA certificate")
        self._key = private_key
        self._cert = certificate
        self._hash = _signing_hash(private_key)
        self._ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())
        self._storage = storage
        self._clock = clock
        self.certificate_pem: str = certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    # --- issuing ------------------------------------------------------------------------

    @staticmethod
    def check_csr(csr_pem: str | bytes) -> DevicePublicKey:
        """Parse a PEM CSR, verify its self-signature and require an EC P-256 key.

        Raises :class:`mdm_core.domain.errors.BadCSR` naming what is wrong.
        """
        data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
        if len(data) > MAX_CSR_BYTES:
            raise BadCSR(f"CSR larger than {MAX_CSR_BYTES} bytes")
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise BadCSR("not a PEM certificate signing request") from exc
        try:
            valid = csr.is_signature_valid
        except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as exc:
            raise BadCSR("CSR signature cannot be checked") from exc
        if not valid:
            raise BadCSR("CSR signature does not verify (no proof of key possession)")
        try:
            key = csr.public_key()
        except (ValueError, TypeError) as exc:
            raise BadCSR("CSR public key cannot be read") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise BadCSR("the device key must be an EC P-256 key")
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return DevicePublicKey(key=key, der=der, thumbprint=jwk_thumbprint(key))

    def issue_device_certificate(
        self,
        csr_pem: str | bytes,
        device_id: str,
        user_id: str,
        lifetime: timedelta,
        *,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a client certificate for ``device_id`` of ``user_id`` on the CSR's key.

        Raises :class:`mdm_core.domain.errors.BadCSR` for a CSR that is not acceptable. The CSR's
        own subject and extensions are ignored: identity comes from the enrollment.
        """
        if not device_id or lifetime <= timedelta(0):
            raise ValueError("device id and a positive lifetime are required")
        device_key = self.check_csr(csr_pem)
        now = now or self._clock()
        not_before = now - BACKDATE
        not_after = min(now + lifetime, self._cert.not_valid_after_utc)
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(DEVICE_URN_PREFIX + device_id)
        ]
        if user_id:
            sans.append(x509.UniformResourceIdentifier(USER_URN_PREFIX + user_id))
        serial_number = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .issuer_name(self._cert.subject)
            .public_key(device_key.key)
            .serial_number(serial_number)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(device_key.key), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
            .sign(self._key, self._hash)
        )
        return IssuedCertificate(
            serial=format(serial_number, "x"),
            pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            public_key=device_key,
        )

    # --- verifying ----------------------------------------------------------------------

    def verify_device_certificate(
        self, certificate: str | bytes, *, now: datetime | None = None
    ) -> CertificateIdentity:
        """Check a presented device certificate (PEM or DER) and say whom it speaks for.

        Refuses (``ProofError`` leaves): unparsable (``malformed_proof``), not issued by this
        CA or bad signature (``bad_signature``), outside its validity window
        (``expired_certificate``), unknown to our records or revoked (``revoked_certificate``).
        """
        data = (
            certificate.encode("ascii", "replace") if isinstance(certificate, str) else certificate
        )
        if len(data) > MAX_CERT_BYTES:
            raise MalformedProof("certificate too large")
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except ValueError as exc:
            raise MalformedProof("not an X.509 certificate") from exc
        if cert.issuer != self._cert.subject:
            raise BadSignature("certificate not issued by this CA")
        try:
            cert.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise BadSignature("certificate signature does not verify against this CA") from exc
        now = now or self._clock()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ExpiredCertificate("certificate outside its validity window")
        device_id, user_id = self._identity_of(cert)
        serial = format(cert.serial_number, "x")
        with self._storage.unit_of_work() as uow:
            record = uow.certificates.get(serial)
        if record is None or record.device_id != device_id:
            raise RevokedCertificate("certificate unknown to this CA's records")
        if record.revoked_at is not None:
            raise RevokedCertificate("certificate revoked")
        return CertificateIdentity(device_id=device_id, user_id=user_id, serial=serial)

    @staticmethod
    def _identity_of(cert: x509.Certificate) -> tuple[str, str]:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound as exc:
            raise MalformedProof("not a device certificate (extensions missing)") from exc
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise MalformedProof("not a client-authentication certificate")
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        devices = [u[len(DEVICE_URN_PREFIX) :] for u in uris if u.startswith(DEVICE_URN_PREFIX)]
        users = [u[len(USER_URN_PREFIX) :] for u in uris if u.startswith(USER_URN_PREFIX)]
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(devices) != 1 or len(users) > 1 or len(cns) != 1 or cns[0].value != devices[0]:
            raise MalformedProof("device certificate names no single device")
        return devices[0], users[0] if users else ""


# --- loading ----------------------------------------------------------------------------


def _new_ca(now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Posture Gateway"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Posture Gateway Device CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _dev_passphrase(data_dir: Path) -> str:
    """Read or create ``<data_dir>/ca-passphrase`` (0600, shared by every process). Dev mode
    only."""
    path = data_dir / "ca-passphrase"
    existed = path.exists()
    passphrase = load_or_create_secret(path)
    if not existed:
        log.warning(
            "dev mode: the CA key is encrypted with a generated passphrase kept in %s; "
            "set ca.passphrase (POSTURE_CA__PASSPHRASE) in production",
            path,
        )
    return passphrase


def _load_from_files(
    key_path: Path, cert_path: Path, passphrase: str | None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key(
            key_path.read_bytes(), passphrase.encode() if passphrase else None
        )
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the CA key or certificate: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "cannot load the CA key/certificate (wrong ca.passphrase or not PEM?)"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
    ):
        raise ConfigurationError("the CA key must be an EC P-256 or P-384 key")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ConfigurationError(f"{cert_path} is not a CA certificate")
    return key, cert


def check_ca_config(
    *, dev_mode: bool, passphrase: str | None, key_path: Path | None, cert_path: Path | None
) -> None:
    """Refuse a CA configuration that cannot work, before anything is created on disk.

    Raises :class:`mdm_core.domain.errors.ConfigurationError` naming the keys to set.
    """
    if (key_path is None) != (cert_path is None):
        raise ConfigurationError("ca.key_path and ca.cert_path must be set together")
    if key_path is None and not passphrase and not dev_mode:
        raise ConfigurationError(
            "ca.passphrase is required to encrypt the CA key at rest: set it in the config "
            "file or POSTURE_CA__PASSPHRASE (or set ca.key_path and ca.cert_path; "
            "`posture init DIR` writes a starter configuration)"
        )


def load_or_create_ca(
    storage: Storage,
    *,
    data_dir: Path,
    dev_mode: bool,
    passphrase: str | None,
    key_path: Path | None = None,
    cert_path: Path | None = None,
    clock: Clock = _utcnow,
) -> CertificateAuthority:
    """The process's CA: from PEM files if configured, else from ``ca_keys`` (created once).

    Raises :class:`mdm_core.domain.errors.ConfigurationError` when the configuration cannot give a
    CA: only one of the two paths, no passphrase outside dev mode, a wrong passphrase.
    """
    check_ca_config(
        dev_mode=dev_mode, passphrase=passphrase, key_path=key_path, cert_path=cert_path
    )
    if key_path is not None and cert_path is not None:
        key, cert = _load_from_files(key_path, cert_path, passphrase)
        return CertificateAuthority(key, cert, storage=storage, clock=clock)
    if not passphrase:
        passphrase = _dev_passphrase(data_dir)
    secret = passphrase.encode()
    with storage.unit_of_work() as uow:
        stored = uow.ca_keys.get_ca_key(CA_KEY_ID)
    if stored is None:
        key, cert = _new_ca(clock())
        candidate = StoredCaKey(
            id=CA_KEY_ID,
            encrypted_key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(secret),
            ).decode("ascii"),
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            created_at=clock(),
        )
        with storage.unit_of_work() as uow:
            if uow.ca_keys.add_ca_key(candidate):
                log.info("generated a new device CA key (%s)", CA_KEY_ID)
                return CertificateAuthority(key, cert, storage=storage, clock=clock)
            stored = uow.ca_keys.get_ca_key(CA_KEY_ID)  # another process won the race
        assert stored is not None
    try:
        loaded = serialization.load_pem_private_key(stored.encrypted_key_pem.encode(), secret)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError("cannot decrypt the stored CA key: wrong ca.passphrase") from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ConfigurationError("the stored CA key is not an EC key")
    cert = x509.load_pem_x509_certificate(stored.certificate_pem.encode())
    return CertificateAuthority(loaded, cert, storage=storage, clock=clock)
