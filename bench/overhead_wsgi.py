"""WSGI factories for bench_overhead.py: the real gateway app and a bare Flask app.

``create_real()`` is bench/decision_wsgi.py's app: the production app
(``posture_gateway.app.create_app``) plus ``POST /bench/bare-verify`` (the decision endpoint's
bearer check, body parser and one ES256 verify). ``create_bare()`` is the floor: a bare Flask
app with the same ``GET /healthz`` answer (``{"status": "ok"}``), a ``/readyz`` for the
harness, and ``POST /bench/bare-verify`` doing only the ES256 verify (same body parser, same
pyjwt call, no bearer check). Both are served by the argv ``posture serve`` builds, so the
difference is what the app does per request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask, Response, jsonify, request

__all__ = ["create_bare", "create_real"]


def create_real() -> Flask:
    from decision_wsgi import create_app

    return create_app()


def create_bare() -> Flask:
    from mdm_core.support.json_input import JsonInputError, loads_bounded

    app = Flask(__name__)
    raw = json.loads(Path(os.environ["BENCH_DEVICE_KEYS"]).read_text(encoding="utf-8"))
    keys: dict[str, Any] = {kid: load_pem_public_key(pem.encode()) for kid, pem in raw.items()}
    audience = os.environ["POSTURE_PUBLIC_URL"].rstrip("/") + "/api/v1/decision"

    def refuse(status: int, error: str) -> Response:
        response = jsonify(error=error)
        response.status_code = status
        return response

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Response:
        return jsonify(status="ready")

    @app.post("/bench/bare-verify")
    def bare_verify() -> Response:
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

    return app
