"""``GET /admin/api/hr/deliveries``: the recorded HR events, newest first (helpdesk role).

Filters: ``outcome`` (one of :data:`~posture_gateway.hr.service.OUTCOMES`, e.g.
``unmatched`` to see the employees no directory user was found for), ``source``
(``bamboohr`` | ``generic``), ``user_id``, ``limit`` (1-500, default 100). Authenticated by
the admin guard (:func:`posture_gateway.admin.guard.install_admin_guard`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from posture_gateway.admin.guard import install_admin_guard, require_role
from posture_gateway.admin.principals import Role
from posture_gateway.hr.metrics import SOURCES
from posture_gateway.hr.openapi import ADMIN_PATHS
from posture_gateway.hr.service import OUTCOMES
from posture_gateway.hr.state import hr_state

__all__ = ["bp", "DELIVERIES_PATH", "MAX_LIMIT"]

bp = Blueprint("hr_admin", __name__, url_prefix="/admin/api/hr")
install_admin_guard(bp)

DELIVERIES_PATH = "/admin/api/hr/deliveries"
MAX_LIMIT = 500


def _bad(reason: str) -> Response:
    response = jsonify({"error": "invalid_request", "reason": reason})
    response.status_code = 400
    return response


@bp.get("/deliveries")
@require_role(Role.HELPDESK)
def deliveries() -> ResponseReturnValue:
    args = request.args
    outcome = args.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        return _bad(f"outcome must be one of {', '.join(OUTCOMES)}")
    source = args.get("source")
    if source is not None and source not in SOURCES:
        return _bad(f"source must be one of {', '.join(SOURCES)}")
    user_id = args.get("user_id")
    if user_id is not None and not 1 <= len(user_id) <= 255:
        return _bad("user_id must be 1-255 characters")
    raw_limit = args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return _bad(f"limit must be an integer from 1 to {MAX_LIMIT}")
    records = hr_state().service.list(
        outcome=outcome, source=source, user_id=user_id, limit=int(raw_limit)
    )
    response = jsonify({"deliveries": [r.to_json() for r in records]})
    response.headers["Cache-Control"] = "no-store"
    return response


# The OpenAPI document reads these from the blueprint's module (posture_gateway/api/openapi.py).
OPENAPI_PATHS = ADMIN_PATHS
