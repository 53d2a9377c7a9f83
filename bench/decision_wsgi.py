"""WSGI factory for bench_decision.py: the real gateway app plus one bench-only route.

``create_app()`` builds the production app (``posture_gateway.app.create_app``, settings from
the ``POSTURE_*`` environment and ``POSTURE_CONFIG``) and adds ``POST /bench/bare-verify``:
the floor of the decision endpoint. It authenticates the caller with **the same bearer check**
as ``/api/v1/decision`` (``authenticate_caller``: client-credentials access token verified,
scope checked), parses the body with the same bounded parser, and verifies the device login
proof with pyjwt ES256 (audience and required claims) against the device's public key from a
dict loaded once at start (``BENCH_DEVICE_KEYS``: JSON ``{device_id: public key PEM}``). No
nonce, no directory, no posture, no policy, no audit. Served by the same server processes as
the gateway, so both endpoints run under identical conditions.

``GET /bench/read-model`` answers the serving worker's read-model cache counters (pid,
entries, hits, misses): the bench prints them after its load (observability only).
"""

from __future__ import annotations

import os

from bare_verify import device_keys, refuse, verify_body
from flask import Flask, Response, jsonify

__all__ = ["create_app"]


def create_app() -> Flask:
    from mdm_core.read_model.wiring import read_model_of
    from posture_gateway.app import create_app as create_gateway
    from posture_gateway.integrations.posture_api import authenticate_caller, proof_audience
    from posture_gateway.integrations.state import integrations

    app = create_gateway()
    keys = device_keys()

    def bare_verify() -> Response:
        st = integrations()
        try:
            authenticate_caller(st)  # the decision endpoint's own bearer check
        except Exception:  # noqa: BLE001 - _AuthFailure is private: any refusal is a 401
            return refuse(401, "invalid_token")
        return verify_body(keys, proof_audience(st))

    app.add_url_rule("/bench/bare-verify", "bench_bare_verify", bare_verify, methods=["POST"])

    def read_model_counters() -> Response:
        cache = read_model_of(app.extensions["posture"].core).cache
        return jsonify(pid=os.getpid(), entries=len(cache), hits=cache.hits, misses=cache.misses)

    app.add_url_rule("/bench/read-model", "bench_read_model", read_model_counters)
    return app
