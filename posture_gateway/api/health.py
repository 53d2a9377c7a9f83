"""Liveness and readiness endpoints: ``/healthz`` (process up), ``/readyz`` (store reachable)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from posture_gateway.state import state

__all__ = ["bp"]

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    try:
        with state().core.database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # readiness reports, it does not raise
        return jsonify(status="unavailable", reason=type(exc).__name__), 503
    return jsonify(status="ready")
