"""WSGI factory for bench_decision.py: the real gateway app plus one bench-only route.

``create_app()`` builds the production app (``posture_gateway.app.create_app``, settings from
the ``POSTURE_*`` environment) and adds ``POST /bench/bare-verify``: the crypto floor of the
decision endpoint. It parses the same JSON body and verifies the same device login proof with
pyjwt ES256 (the device's public key looked up in a dict loaded once at start from the file
named by ``BENCH_DEVICE_KEYS``: ``{device_id: public key PEM}``), checking audience and the
required claims, and answers a small JSON object. No database, no nonce, no policy, no audit.
Served by the same server process as the gateway so both run under identical conditions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask, Response, jsonify, request

__all__ = ["create_app"]


def create_app() -> Flask:
    from posture_gateway.app import create_app as create_gateway

    app = create_gateway()
    raw = json.loads(Path(os.environ["BENCH_DEVICE_KEYS"]).read_text(encoding="utf-8"))
    keys: dict[str, Any] = {kid: load_pem_public_key(pem.encode()) for kid, pem in raw.items()}
    audience = os.environ["POSTURE_PUBLIC_URL"].rstrip("/") + "/api/v1/decision"

    def bare_verify() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("device_proof"), str):
            response = jsonify(error="invalid_request", reason="no device_proof")
            response.status_code = 400
            return response
        proof = body["device_proof"]
        kid = jwt.get_unverified_header(proof).get("kid")
        key = keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            response = jsonify(error="unknown_device", reason="no key for kid")
            response.status_code = 401
            return response
        try:
            claims = jwt.decode(
                proof,
                key,
                algorithms=["ES256"],
                audience=audience,
                options={"require": ["aud", "iat", "nonce", "jti"]},
            )
        except jwt.PyJWTError as exc:
            response = jsonify(error="invalid_proof", reason=type(exc).__name__)
            response.status_code = 401
            return response
        return jsonify(ok=True, device_id=kid, nonce_len=len(claims["nonce"]))

    app.add_url_rule("/bench/bare-verify", "bench_bare_verify", bare_verify, methods=["POST"])
    return app
