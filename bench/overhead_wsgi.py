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

import os

from bare_verify import device_keys, verify_body
from flask import Flask, Response, jsonify

__all__ = ["create_bare", "create_real"]


def create_real() -> Flask:
    from decision_wsgi import create_app

    return create_app()


def create_bare() -> Flask:
    app = Flask(__name__)
    keys = device_keys()
    audience = os.environ["POSTURE_PUBLIC_URL"].rstrip("/") + "/api/v1/decision"

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Response:
        return jsonify(status="ready")

    @app.post("/bench/bare-verify")
    def bare_verify() -> Response:
        return verify_body(keys, audience)

    return app
