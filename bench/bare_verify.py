"""The bare ES256 verify both bench WSGI factories serve: the floor of the decision endpoint.

:func:`device_keys` loads ``BENCH_DEVICE_KEYS`` (JSON ``{device_id: public key PEM}``) once at
start; :func:`verify_body` parses the request body with the gateway's bounded parser and
verifies the device login proof with pyjwt ES256 (audience and required claims) against the
device's key. No nonce, no directory, no posture, no policy, no audit. Used by
``decision_wsgi`` (behind the decision endpoint's own bearer check) and ``overhead_wsgi``
(with no bearer check: the bare Flask floor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Response, jsonify, request

from mdm_core.support.json_input import JsonInputError, loads_bounded

__all__ = ["device_keys", "refuse", "verify_body"]


def device_keys() -> dict[str, Any]:
    raw = json.loads(Path(os.environ["BENCH_DEVICE_KEYS"]).read_text(encoding="utf-8"))
    return {kid: load_pem_public_key(pem.encode()) for kid, pem in raw.items()}


def refuse(status: int, error: str) -> Response:
    response = jsonify(error=error)
    response.status_code = status
    return response


def verify_body(keys: dict[str, Any], audience: str) -> Response:
    """Verify the request's ``device_proof``: 200 with the device id, or the refusal."""
    try:
        body = loads_bounded(request.get_data(cache=False))
    except JsonInputError:
        return refuse(400, "invalid_request")
    if not isinstance(body, dict) or not isinstance(body.get("device_proof"), str):
        return refuse(400, "invalid_request")
    proof = body["device_proof"]
    try:
        kid = jwt.get_unverified_header(proof).get("kid")
    except jwt.PyJWTError:
        return refuse(401, "invalid_proof")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        return refuse(401, "unknown_device")
    try:
        claims = jwt.decode(
            proof,
            key,
            algorithms=["ES256"],
            audience=audience,
            options={"require": ["aud", "iat", "nonce", "jti"]},
        )
    except jwt.PyJWTError:
        return refuse(401, "invalid_proof")
    return jsonify(ok=True, device_id=kid, nonce_len=len(claims["nonce"]))
