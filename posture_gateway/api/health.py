"""Liveness and readiness endpoints: ``/healthz`` (process up), ``/readyz`` (backends reachable).

``/healthz`` answers 200 while the process serves (a supervisor must not restart a process
only because a backend is down: it would come back to the same outage). ``/readyz`` answers
200 only when the store answers ``SELECT 1`` and, when ``redis_url`` is configured, Redis
answers ``PING`` (nonces, login transactions, the bus and rate limits live there: without it
no login can complete); otherwise 503 with which backend failed. A load balancer takes the
instance out of rotation on 503 and back when both answer again (no restart). Each check is
bounded by the clients' timeouts (about a second for Redis).
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from posture_gateway.access.backends import require_shared_backends
from posture_gateway.state import state

__all__ = ["bp"]

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    core = state().core
    try:
        with core.database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # readiness reports, it does not raise
        return jsonify(status="unavailable", backend="database", reason=type(exc).__name__), 503
    try:
        require_shared_backends(core)
    except Exception as exc:
        return jsonify(status="unavailable", backend="redis", reason=type(exc).__name__), 503
    return jsonify(status="ready")
