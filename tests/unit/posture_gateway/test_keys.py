"""Key ring: generation, encrypted persistence, JWKS entries, rotation with overlap."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from posture_gateway.signing.key_ring import KeyRing, KeyRingError, generate_signing_key

PASS = b"correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_open_creates_one_encrypted_rs256_key(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, passphrase=PASS)
    (key,) = ring.keys
    assert key.alg == "RS256" and key.private_key.key_size == 2048  # type: ignore[union-attr]
    pem = (tmp_path / f"{key.kid}.key.pem").read_bytes()
    assert b"ENCRYPTED" in pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    assert (tmp_path / f"{key.kid}.key.pem").stat().st_mode & 0o077 == 0


def test_reopen_loads_the_same_key(tmp_path: Path) -> None:
    first = KeyRing.open(tmp_path, passphrase=PASS)
    second = KeyRing.open(tmp_path, passphrase=PASS)
    assert [k.kid for k in first.keys] == [k.kid for k in second.keys]


def test_wrong_or_missing_passphrase_is_refused(tmp_path: Path) -> None:
    KeyRing.open(tmp_path, passphrase=PASS)
    with pytest.raises(KeyRingError, match="wrong passphrase"):
        KeyRing.open(tmp_path, passphrase=b"nope")
    with pytest.raises(KeyRingError, match="key_passphrase is required"):
        KeyRing.open(tmp_path, passphrase=None)


def test_dev_mode_allows_unencrypted(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, passphrase=None, dev_mode=True)
    pem = (tmp_path / f"{ring.keys[0].kid}.key.pem").read_bytes()
    assert b"ENCRYPTED" not in pem


def test_damaged_manifest_names_the_file(tmp_path: Path) -> None:
    KeyRing.open(tmp_path, passphrase=PASS)
    (tmp_path / "keyring.json").write_text("{not json")
    with pytest.raises(KeyRingError, match="keyring.json"):
        KeyRing.open(tmp_path, passphrase=PASS)


def test_jwks_entry_carries_x5c_and_thumbprint(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, passphrase=PASS)
    (entry,) = ring.jwks()["keys"]
    key = ring.keys[0]
    assert entry["kid"] == key.kid and entry["alg"] == "RS256" and entry["use"] == "sig"
    assert entry["kty"] == "RSA" and "d" not in entry
    der = base64.b64decode(entry["x5c"][0])
    cert = x509.load_der_x509_certificate(der)
    assert cert.public_key().public_numbers() == key.public_key.public_numbers()
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert entry["x5t#S256"] == expected


def test_sign_jwt_verifies_with_published_jwk(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, passphrase=PASS)
    token = ring.sign_jwt({"sub": "u1"}, {"typ": "at+jwt", "alg": "HS256", "kid": "x"})
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == ring.keys[0].kid  # header can't override
    assert header["typ"] == "at+jwt"
    jwk = jwt.PyJWK(ring.jwks()["keys"][0])
    assert jwt.decode(token, jwk.key, algorithms=["RS256"]) == {"sub": "u1"}


def test_rotation_keeps_old_key_published_until_retire_after(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing.open(tmp_path, passphrase=PASS, clock=clock)
    old = ring.active()
    new = ring.rotate(overlap=timedelta(hours=1))
    assert ring.active().kid == new.kid != old.kid
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old.kid, new.kid}
    assert ring.verification_key(old.kid) is not None
    # Another process sees the rotation after reload.
    other = KeyRing.open(tmp_path, passphrase=PASS, clock=clock)
    assert other.active().kid == new.kid
    clock.now += timedelta(hours=1, seconds=1)
    assert {k["kid"] for k in ring.jwks()["keys"]} == {new.kid}
    assert ring.verification_key(old.kid) is None
    # The next rotation prunes the expired key's files.
    ring.rotate(overlap=timedelta(hours=1))
    assert not (tmp_path / f"{old.kid}.key.pem").exists()
    manifest = json.loads((tmp_path / "keyring.json").read_text())
    assert old.kid not in {k["kid"] for k in manifest["keys"]}


def test_es256_is_optional_and_separate(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, passphrase=PASS)
    assert ring.supported_algs() == ("RS256",)
    with pytest.raises(KeyRingError, match="no active ES256"):
        ring.sign_jwt({"a": 1}, alg="ES256")
    es = ring.rotate("ES256", overlap=timedelta(hours=1))
    assert ring.supported_algs() == ("RS256", "ES256")
    token = ring.sign_jwt({"a": 1}, alg="ES256")
    assert jwt.get_unverified_header(token)["kid"] == es.kid
    entry = next(k for k in ring.jwks()["keys"] if k["kid"] == es.kid)
    assert entry["kty"] == "EC" and entry["crv"] == "P-256" and entry["x5c"]


def test_from_pem_files(tmp_path: Path) -> None:
    key = generate_signing_key("RS256")
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    key_path.write_bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASS),
        )
    )
    cert_path.write_bytes(key.certificate.public_bytes(serialization.Encoding.PEM))
    ring = KeyRing.from_pem_files(key_path, cert_path, passphrase=PASS)
    assert ring.active().alg == "RS256"
    with pytest.raises(KeyRingError, match="fixed PEM"):
        ring.rotate(overlap=timedelta(hours=1))
    other = generate_signing_key("RS256")
    cert_path.write_bytes(other.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(KeyRingError, match="does not match"):
        KeyRing.from_pem_files(key_path, cert_path, passphrase=PASS)


def test_other_process_picks_up_rotation(tmp_path: Path) -> None:
    server = KeyRing.open(tmp_path, passphrase=PASS)
    cli = KeyRing.open(tmp_path, passphrase=PASS)
    old = server.active().kid
    new = cli.rotate(overlap=timedelta(hours=1))
    server._next_check = 0.0  # the periodic check is due
    assert server.active().kid == new.kid
    assert {k["kid"] for k in server.jwks()["keys"]} == {old, new.kid}


def test_ensure_creates_missing_alg_once(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, passphrase=PASS)
    rs = ring.ensure("RS256")
    assert rs.kid == ring.active().kid and len(ring.keys) == 1  # present: unchanged
    es = ring.ensure("ES256")
    assert ring.ensure("ES256").kid == es.kid and len(ring.keys) == 2
    assert ring.active("RS256").kid == rs.kid  # RS256 untouched
    fixed = KeyRing([generate_signing_key("RS256")])
    with pytest.raises(KeyRingError):
        fixed.ensure("ES256")
