"""The gateway's signing key ring: ID tokens, access tokens, SETs (RFC 7515/7517/7518).

Owns the private keys the gateway signs with. Keys are loaded (or generated) ONCE, at start or
on rotation, and kept as ``cryptography`` key objects: signing never re-parses PEM (an RSA key
handed over as PEM costs ~60x the signature itself, see FACTS.md).

- RS256 (RSA-2048) is the default signer: Microsoft Entra's External Authentication Method and
  the CAEP interoperability profile require it. ES256 (P-256) keys are optional, for relying
  parties that ask for ``id_token_signed_response_alg: ES256``.
- Every key carries a self-signed X.509 certificate so its JWKS entry has ``x5c`` and
  ``x5t#S256`` (Entra requires ``x5c``).
- At rest: ``<data_dir>/oidc-keys/`` holds ``keyring.json`` (the manifest: kid, alg, created,
  retire_after) and per key ``<kid>.key.pem`` (PKCS#8, encrypted with the configured
  passphrase; unencrypted only in dev mode) and ``<kid>.crt.pem``. Alternatively one fixed key
  and certificate come from configured PEM files (rotation then happens outside the gateway).
- Rotation with overlap: :meth:`KeyRing.rotate` makes a new key the active signer for its
  algorithm; the previous one stays published in the JWKS (so tokens it signed still verify)
  until its ``retire_after``. Other processes (gunicorn workers, the CLI) pick up a rotation
  within seconds: the ring re-reads the manifest when its mtime changes (checked at most every
  5 s), or at once with :meth:`KeyRing.reload`.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = [
    "Alg",
    "SUPPORTED_ALGS",
    "KeyRingError",
    "SigningKey",
    "KeyRing",
    "generate_signing_key",
]

Alg = Literal["RS256", "ES256"]
SUPPORTED_ALGS: tuple[Alg, ...] = ("RS256", "ES256")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
Clock = Callable[[], datetime]

_MANIFEST = "keyring.json"
_LOCK = ".lock"
_RELOAD_CHECK_SECONDS = 5.0  # how often a process looks for a rotation made by another one
_CERT_LIFETIME = timedelta(days=3650)  # the cert only carries the key in x5c; JWKS governs use


class KeyRingError(Exception):
    """The key ring cannot be loaded, created or changed; the message says why and where."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """One loaded signing key with its certificate. ``retire_after`` None = not retiring."""

    kid: str
    alg: Alg
    private_key: PrivateKey
    certificate: x509.Certificate
    created_at: datetime
    retire_after: datetime | None = None

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def is_published(self, now: datetime) -> bool:
        """Published in the JWKS (and accepted for verification) until ``retire_after``."""
        return self.retire_after is None or now < self.retire_after

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry: key material, ``kid``, ``use``, ``alg``, ``x5c``, ``x5t#S256``."""
        public = self.public_key
        if isinstance(public, rsa.RSAPublicKey):
            jwk: dict[str, Any] = dict(RSAAlgorithm.to_jwk(public, as_dict=True))
        else:
            jwk = dict(ECAlgorithm.to_jwk(public, as_dict=True))
        jwk.pop("key_ops", None)  # RFC 7517 4.3: "use" and "key_ops" should not both be present
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        jwk.update(
            kid=self.kid,
            use="sig",
            alg=self.alg,
            x5c=[base64.b64encode(der).decode("ascii")],
        )
        jwk["x5t#S256"] = _b64url(hashlib.sha256(der).digest())
        return jwk


def _self_signed(
    private_key: PrivateKey, kid: str, issuer_name: str, now: datetime
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer_name} token signing {kid}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Posture Gateway"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CERT_LIFETIME)
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
        .sign(private_key, hashes.SHA256())
    )


def generate_signing_key(
    alg: Alg, *, issuer_name: str = "posture-gateway", now: datetime | None = None
) -> SigningKey:
    """A fresh key (RSA-2048 for RS256, P-256 for ES256) with its self-signed certificate."""
    now = now or _utcnow()
    private_key: PrivateKey
    if alg == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyRingError(f"unsupported signing algorithm {alg!r}; use one of {SUPPORTED_ALGS}")
    kid = f"{alg.lower()}-{now:%Y%m%d}-{secrets.token_hex(4)}"
    cert = _self_signed(private_key, kid, issuer_name, now)
    return SigningKey(kid=kid, alg=alg, private_key=private_key, certificate=cert, created_at=now)


def _alg_of(private_key: object, where: str) -> Alg:
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < 2048:
            raise KeyRingError(f"{where}: RSA key of {private_key.key_size} bits; need >= 2048")
        return "RS256"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise KeyRingError(f"{where}: EC key on {private_key.curve.name}; need P-256")
        return "ES256"
    raise KeyRingError(f"{where}: not an RSA or P-256 private key")


class KeyRing:
    """The loaded signing keys. Thread-safe for reads; changes happen through rotate/reload.

    Construct with :meth:`open` (persistent, in a directory), :meth:`from_pem_files` (fixed key)
    or directly from :class:`SigningKey` objects (tests, tools).
    """

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        directory: Path | None = None,
        passphrase: bytes | None = None,
        issuer_name: str = "posture-gateway",
        clock: Clock = _utcnow,
    ) -> None:
        if not keys:
            raise KeyRingError("a key ring needs at least one key")
        self._keys: tuple[SigningKey, ...] = tuple(keys)
        self._directory = directory
        self._passphrase = passphrase
        self._issuer_name = issuer_name
        self._clock = clock
        self._manifest_stamp = self._stamp()
        self._next_check = 0.0

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        passphrase: bytes | None,
        dev_mode: bool = False,
        issuer_name: str = "posture-gateway",
        clock: Clock = _utcnow,
    ) -> KeyRing:
        """Load the ring from ``directory``, creating an RS256 key the first time.

        Without a passphrase the keys are stored unencrypted, which only ``dev_mode`` allows.
        Raises :class:`KeyRingError` on a missing passphrase, a wrong passphrase, or a damaged
        manifest or key file (naming the file).
        """
        if passphrase is None and not dev_mode:
            raise KeyRingError(
                "oidc.key_passphrase is required to keep signing keys encrypted at rest "
                "(or configure oidc.signing_key_path/signing_cert_path, or dev_mode)"
            )
        ring_dir = Path(directory)
        ring_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(ring_dir):
            keys = _read_ring(ring_dir, passphrase)
            if not keys:
                key = generate_signing_key("RS256", issuer_name=issuer_name, now=clock())
                _write_key(ring_dir, key, passphrase)
                keys = [key]
                _write_manifest(ring_dir, keys)
        return cls(
            keys, directory=ring_dir, passphrase=passphrase, issuer_name=issuer_name, clock=clock
        )

    @classmethod
    def from_pem_files(
        cls, key_path: Path, cert_path: Path, *, passphrase: bytes | None, clock: Clock = _utcnow
    ) -> KeyRing:
        """One fixed key and its certificate from PEM files (not rotatable from here)."""
        try:
            private_key = serialization.load_pem_private_key(
                key_path.read_bytes(), password=passphrase
            )
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise KeyRingError(f"{key_path} / {cert_path}: cannot load signing key: {exc}") from exc
        alg = _alg_of(private_key, str(key_path))
        assert isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        if cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise KeyRingError(f"{cert_path}: certificate does not match the key in {key_path}")
        kid = _b64url(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())[:16]
        key = SigningKey(
            kid=kid,
            alg=alg,
            private_key=private_key,
            certificate=cert,
            created_at=cert.not_valid_before_utc,
        )
        return cls([key], clock=clock)

    def reload(self) -> None:
        """Re-read the directory (after a rotation by another process, e.g. the CLI)."""
        if self._directory is None:
            return
        with _locked(self._directory):
            stamp = self._stamp()
            keys = _read_ring(self._directory, self._passphrase)
        if not keys:
            raise KeyRingError(f"{self._directory}: the key ring is empty")
        self._keys = tuple(keys)
        self._manifest_stamp = stamp

    def _stamp(self) -> tuple[int, int] | None:
        if self._directory is None:
            return None
        try:
            st = (self._directory / _MANIFEST).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _refresh(self) -> None:
        """Pick up a rotation made by another process: one stat() every few seconds.

        A failed reload keeps the keys already loaded (they are still valid to sign with).
        """
        if self._directory is None:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _RELOAD_CHECK_SECONDS
        if self._stamp() != self._manifest_stamp:
            try:
                self.reload()
            except KeyRingError:
                pass

    # ---- reading ------------------------------------------------------------------------

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key the ring holds, oldest first (including retired, not yet pruned)."""
        return self._keys

    def active(self, alg: Alg = "RS256") -> SigningKey:
        """The signer for ``alg``: the newest key of that algorithm that is not retiring."""
        self._refresh()
        candidates = [k for k in self._keys if k.alg == alg and k.retire_after is None]
        if not candidates:
            raise KeyRingError(
                f"no active {alg} signing key (run `posture keys rotate --alg {alg}`)"
            )
        return max(candidates, key=lambda k: k.created_at)

    def supported_algs(self) -> tuple[Alg, ...]:
        """Algorithms there is an active signer for (RS256 first)."""
        return tuple(
            a
            for a in SUPPORTED_ALGS
            if any(k.alg == a and k.retire_after is None for k in self._keys)
        )

    def published(self) -> tuple[SigningKey, ...]:
        """Keys in the JWKS now: active ones and retiring ones still within their overlap."""
        self._refresh()
        now = self._clock()
        return tuple(k for k in self._keys if k.is_published(now))

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set document (RFC 7517) for ``/jwks.json``."""
        return {"keys": [k.public_jwk() for k in self.published()]}

    def verification_key(self, kid: str) -> SigningKey | None:
        """The published key with this ``kid``, or None (unknown or retired: reject the token)."""
        self._refresh()
        now = self._clock()
        for key in self._keys:
            if key.kid == kid and key.is_published(now):
                return key
        return None

    # ---- signing ------------------------------------------------------------------------

    def sign_jwt(
        self,
        claims: Mapping[str, Any],
        headers: Mapping[str, Any] | None = None,
        alg: Alg = "RS256",
    ) -> str:
        """Sign ``claims`` with the active key for ``alg``; the header gets its ``kid``.

        ``headers`` may set e.g. ``typ``; ``alg`` and ``kid`` always come from the key.
        """
        key = self.active(alg)
        header = {"typ": "JWT", **(headers or {}), "kid": key.kid, "alg": key.alg}
        return jwt.encode(dict(claims), key.private_key, algorithm=key.alg, headers=header)

    # ---- changing -----------------------------------------------------------------------

    def ensure(self, alg: Alg) -> SigningKey:
        """The active key for ``alg``, creating (and persisting) one if there is none.

        Used at start for algorithms a configured relying party asks for. Raises
        :class:`KeyRingError` for a fixed PEM ring that lacks ``alg``.
        """
        try:
            return self.active(alg)
        except KeyRingError:
            if self._directory is None:
                raise
        # Decide under the directory lock, on the ring as it is on disk now: of several
        # processes starting at once, the first creates the key and the others adopt it.
        directory = self._directory
        with _locked(directory):
            keys = _read_ring(directory, self._passphrase)
            found = [k for k in keys if k.alg == alg and k.retire_after is None]
            if not found:
                found = [
                    generate_signing_key(alg, issuer_name=self._issuer_name, now=self._clock())
                ]
                _write_key(directory, found[0], self._passphrase)
                keys = [*keys, found[0]]
                _write_manifest(directory, keys)
            stamp = self._stamp()
        self._keys = tuple(keys)
        self._manifest_stamp = stamp
        return max(found, key=lambda k: k.created_at)

    def rotate(self, alg: Alg = "RS256", *, overlap: timedelta) -> SigningKey:
        """Make a new key the active signer for ``alg``; keep the old one published for ``overlap``.

        Persists the new key and manifest first, then swaps the in-memory ring. Keys past their
        ``retire_after`` are pruned (files deleted) at the same time.
        """
        directory = self._require_directory()
        now = self._clock()
        new_key = generate_signing_key(alg, issuer_name=self._issuer_name, now=now)
        with _locked(directory):
            current = _read_ring(directory, self._passphrase)
            updated: list[SigningKey] = []
            for key in current:
                if key.alg == alg and key.retire_after is None:
                    key = replace(key, retire_after=now + overlap)
                updated.append(key)
            _write_key(directory, new_key, self._passphrase)
            updated.append(new_key)
            kept = [k for k in updated if k.is_published(now)]
            _write_manifest(directory, kept)
            for gone in (k for k in updated if not k.is_published(now)):
                _delete_key_files(directory, gone.kid)
            stamp = self._stamp()
        self._keys = tuple(kept)
        self._manifest_stamp = stamp
        return new_key

    def _require_directory(self) -> Path:
        if self._directory is None:
            raise KeyRingError(
                "this key ring comes from fixed PEM files; rotate by replacing those files"
            )
        return self._directory


# ---- files ------------------------------------------------------------------------------


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the directory: two processes never create or rotate at once."""
    with open(directory / _LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + f".tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_key(directory: Path, key: SigningKey, passphrase: bytes | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _atomic_write(directory / f"{key.kid}.key.pem", pem)
    _atomic_write(
        directory / f"{key.kid}.crt.pem",
        key.certificate.public_bytes(serialization.Encoding.PEM),
        0o644,
    )


def _delete_key_files(directory: Path, kid: str) -> None:
    for suffix in (".key.pem", ".crt.pem"):
        (directory / f"{kid}{suffix}").unlink(missing_ok=True)


def _write_manifest(directory: Path, keys: Sequence[SigningKey]) -> None:
    entries = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "created_at": k.created_at.isoformat(),
            "retire_after": k.retire_after.isoformat() if k.retire_after else None,
        }
        for k in keys
    ]
    data = json.dumps({"version": 1, "keys": entries}, indent=2).encode()
    _atomic_write(directory / _MANIFEST, data)


def _read_ring(directory: Path, passphrase: bytes | None) -> list[SigningKey]:
    manifest_path = directory / _MANIFEST
    if not manifest_path.exists():
        return []
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["keys"]
        assert isinstance(entries, list)
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise KeyRingError(f"{manifest_path}: damaged key ring manifest: {exc}") from exc
    keys: list[SigningKey] = []
    for index, entry in enumerate(entries):
        where = f"{manifest_path}: keys[{index}]"
        try:
            kid = str(entry["kid"])
            alg = entry["alg"]
            created_at = datetime.fromisoformat(entry["created_at"])
            retire_raw = entry.get("retire_after")
            retire_after = datetime.fromisoformat(retire_raw) if retire_raw else None
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyRingError(f"{where}: {exc}") from exc
        if alg not in SUPPORTED_ALGS:
            raise KeyRingError(f"{where}: unsupported alg {alg!r}")
        key_file = directory / f"{kid}.key.pem"
        try:
            private_key = serialization.load_pem_private_key(
                key_file.read_bytes(), password=passphrase
            )
            cert = x509.load_pem_x509_certificate((directory / f"{kid}.crt.pem").read_bytes())
        except TypeError as exc:
            raise KeyRingError(
                f"{key_file}: key is encrypted but no passphrase was given, "
                "or a passphrase was given for an unencrypted key"
            ) from exc
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"{key_file}: cannot load (wrong passphrase?): {exc}") from exc
        if _alg_of(private_key, str(key_file)) != alg:
            raise KeyRingError(f"{key_file}: key type does not match alg {alg}")
        assert isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        keys.append(
            SigningKey(
                kid=kid,
                alg=alg,
                private_key=private_key,
                certificate=cert,
                created_at=created_at,
                retire_after=retire_after,
            )
        )
    return keys
