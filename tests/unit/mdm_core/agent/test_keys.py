"""The agent's device key: file handling, CSR, and the exact shape of the proofs it signs."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mdm_core.agent.keys import DeviceKey, KeyFileError, body_hash, htu_of


def test_key_file_is_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "state" / "device_key.pem"
    key = DeviceKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    again = DeviceKey.load_or_create(path)
    assert again.thumbprint() == key.thumbprint()
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device_key.pem"
    DeviceKey.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="group/others"):
        DeviceKey.load(path)


@pytest.mark.parametrize("content", [b"", b"not a pem", b"-----BEGIN PRIVATE KEY-----\nAA\n"])
def test_garbage_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        DeviceKey.load(path)


def test_non_p256_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        DeviceKey(ec.generate_private_key(ec.SECP384R1()))
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "rsa.pem"
    path.write_bytes(rsa_pem)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not an EC key"):
        DeviceKey.load(path)


def test_csr_is_signed_by_the_device_key() -> None:
    key = DeviceKey.generate()
    csr = x509.load_pem_x509_csr(key.csr_pem("SERIAL123").encode())
    assert csr.is_signature_valid
    assert csr.public_key().public_numbers() == key.private_key.public_key().public_numbers()


def test_thumbprint_is_rfc7638() -> None:
    key = DeviceKey.generate()
    jwk = key.public_jwk()
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    digest = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    assert key.thumbprint() == digest.decode()


def test_request_proof_shape() -> None:
    key = DeviceKey.generate()
    body = b'{"format":"agent","report":{}}'
    token = key.request_proof(
        "dev-1", "post", "https://mdm.example.com:8443/mdm/v1/checkin?x=1#f", body
    )
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "device-proof+jwt", "kid": "dev-1"}
    claims = jwt.decode(
        token,
        key.private_key.public_key(),
        algorithms=["ES256"],
        options={"require": ["htm", "htu", "iat", "jti", "bh"]},
    )
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://mdm.example.com:8443/mdm/v1/checkin"
    assert claims["bh"] == body_hash(body)
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) >= 16
    assert "=" not in claims["bh"] and "=" not in claims["jti"]
    other = key.request_proof("dev-1", "POST", "https://mdm.example.com/x", body)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != claims["jti"]


def test_proof_signed_by_another_key_does_not_verify() -> None:
    token = DeviceKey.generate().request_proof("dev-1", "GET", "http://h/p")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, DeviceKey.generate().private_key.public_key(), algorithms=["ES256"])


def test_login_proof_shape() -> None:
    key = DeviceKey.generate()
    token = key.login_proof(
        "dev-9", "https://gw.example.com", "n" * 24, posture={"format": "agent", "report": {}}
    )
    assert jwt.get_unverified_header(token)["typ"] == "device-login+jwt"
    claims = jwt.decode(
        token,
        key.private_key.public_key(),
        algorithms=["ES256"],
        audience="https://gw.example.com",
        options={"require": ["aud", "nonce", "iat", "jti"]},
    )
    assert claims["nonce"] == "n" * 24
    assert claims["posture"] == {"format": "agent", "report": {}}


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("http://127.0.0.1:8000/mdm/v1/checkin", "http://127.0.0.1:8000/mdm/v1/checkin"),
        (
            "https://h.example/mdm/v1/commands/wait?timeout=30",
            "https://h.example/mdm/v1/commands/wait",
        ),
        ("https://h.example", "https://h.example/"),
    ],
)
def test_htu(url: str, htu: str) -> None:
    assert htu_of(url) == htu


def test_body_hash_of_empty_body() -> None:
    assert body_hash(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
