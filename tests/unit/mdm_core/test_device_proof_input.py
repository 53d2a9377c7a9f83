"""Device proofs whose JSON is hostile are refused as malformed proofs, never a RecursionError
(a 500): deeply nested payloads before and after the signature check, duplicate header names.
(Issue 7, finding 12: every JSON parser of untrusted input is bounded.)"""

from __future__ import annotations

import base64
import json
import time

import pytest
from jwt.api_jws import PyJWS

from mdm_core.device.proof import LOGIN_PROOF_TYP, MAX_REQUEST_PROOF_BYTES, REQUEST_PROOF_TYP
from mdm_core.domain.errors import BadSignature, MalformedProof, ProofError
from mdm_core.runtime import MdmCore
from tests.helpers.device_keys import DeviceKey, body_hash, new_jti
from tests.helpers.enrolled import PUBLIC_URL, EnrolledDevice

URL = PUBLIC_URL + "/mdm/v1/checkin"
BODY = b"{}"
AUD = "https://gateway.test"
# Past the recursion limit, within the proof size limits (4 KiB request, 64 KiB login).
DEEP_REQUEST = b"[" * 1_300 + b"]" * 1_300
DEEP_LOGIN = b"[" * 20_000 + b"]" * 20_000


def _signed(dev: EnrolledDevice, payload: bytes, typ: str = REQUEST_PROOF_TYP) -> str:
    """An ES256 JWS over exactly ``payload`` bytes, by the enrolled key."""
    key: DeviceKey = dev.key
    return PyJWS().encode(
        payload, key.private_key, algorithm="ES256", headers={"kid": dev.device_id, "typ": typ}
    )


def _request_claims_with(extra: bytes) -> bytes:
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": new_jti()}
    claims["bh"] = body_hash(BODY)
    return json.dumps(claims).encode()[:-1] + b', "x": ' + extra + b"}"


def test_a_signed_deeply_nested_request_proof_is_malformed(
    core: MdmCore, dev: EnrolledDevice
) -> None:
    token = _signed(dev, _request_claims_with(DEEP_REQUEST))
    assert len(token) <= MAX_REQUEST_PROOF_BYTES  # reaches the parsers
    with pytest.raises(MalformedProof):
        core.proofs.verify(token, method="POST", url=URL, body=BODY)


def test_an_unsigned_deeply_nested_request_proof_is_refused(
    core: MdmCore, dev: EnrolledDevice
) -> None:
    token = _signed(dev, _request_claims_with(DEEP_REQUEST))
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    with pytest.raises((MalformedProof, BadSignature)):
        core.proofs.verify(forged, method="POST", url=URL, body=BODY)


def test_a_signed_deeply_nested_login_proof_is_malformed(
    core: MdmCore, dev: EnrolledDevice
) -> None:
    claims = {"aud": AUD, "nonce": "n-1", "iat": int(time.time()), "jti": new_jti()}
    payload = json.dumps(claims).encode()[:-1] + b', "posture": ' + DEEP_LOGIN + b"}"
    token = _signed(dev, payload, typ=LOGIN_PROOF_TYP)
    with pytest.raises(ProofError):
        core.proofs.verify_login_proof(token, audience=AUD, nonce="n-1")


def test_a_header_with_duplicate_names_is_malformed(core: MdmCore, dev: EnrolledDevice) -> None:
    good = dev.request_proof("POST", URL, BODY)
    _, payload, signature = good.split(".")
    header = json.dumps({"alg": "ES256", "kid": dev.device_id, "kid ": "x"}).replace(
        '"kid "', '"kid"'
    )
    segment = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()
    with pytest.raises(MalformedProof):
        core.proofs.verify(f"{segment}.{payload}.{signature}", method="POST", url=URL, body=BODY)
