"""The admin JSON API: ``GET /admin/api/what-if?user=U&device=D&app=A``.

Explains the decision a user would get on a device for an app (see
:mod:`mdm_core.access.whatif`: the live decision path, not audited) without logging anyone
in, plus ``GET /admin/api/policies`` (the set in force and whether the files on disk
currently validate), and ``GET /admin/api/sessions?user_id=U`` (or ``device_id=D``): the SSO
sessions of a user or a device, live and ended (:mod:`posture_gateway.sso`).

Guard: :mod:`posture_gateway.admin.guard` -- a named admin's own token (any role), or, on
these three read-only routes only, the old shared ``settings.admin_token`` (compared in
constant time; none configured or shorter than 32 characters: refused, fail closed). Errors
are JSON ``{"error": code, "reason": text}``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from mdm_core.access.whatif import what_if
from mdm_core.policy.errors import PolicySetUnavailable
from posture_gateway.access.device_gate import evaluator
from posture_gateway.admin.guard import MIN_TOKEN_LENGTH, admin_error, install_admin_guard
from posture_gateway.sso.sql import SqlSessionStore
from posture_gateway.state import state

__all__ = ["bp", "MIN_TOKEN_LENGTH"]

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,256}$")
_APP = re.compile(r"^[\x21-\x7e]{1,512}$")


install_admin_guard(bp)  # named admins; the shared token on these three routes only


@bp.get("/what-if")
def what_if_view() -> tuple[Response, int]:
    user_id = request.args.get("user", "")
    device_id = request.args.get("device", "")
    app = request.args.get("app") or None
    if not _ID.match(user_id):
        return admin_error(400, "bad_request", "`user` is required (1-256 characters, no spaces)")
    if not _ID.match(device_id):
        return admin_error(400, "bad_request", "`device` is required (1-256 characters, no spaces)")
    if app is not None and not _APP.match(app):
        return admin_error(400, "bad_request", "`app` must be 1-512 printable characters")
    core = state().core
    try:
        core.policies.current()  # none in force: say so (the evaluator would block everything)
    except PolicySetUnavailable as exc:
        return admin_error(503, "policy_set_unavailable", str(exc))
    result = what_if(
        evaluator(), user_id=user_id, device_id=device_id, app=app, now=datetime.now(UTC)
    )
    response = jsonify(result)
    response.headers["Cache-Control"] = "no-store"
    return response, 200


@bp.get("/policies")
def policies_view() -> tuple[Response, int]:
    status = state().core.policies.status
    body: dict[str, Any] = {
        "directory": status.directory,
        "fingerprint": status.fingerprint,
        "loaded_at": status.loaded_at.isoformat() if status.loaded_at else None,
        "last_attempt_at": status.last_attempt_at.isoformat() if status.last_attempt_at else None,
        "healthy": status.healthy,
        "errors": [{"file": p.file, "line": p.line, "reason": p.reason} for p in status.errors],
    }
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200


@bp.get("/sessions")
def sessions_view() -> tuple[Response, int]:
    user_id = request.args.get("user_id")
    device_id = request.args.get("device_id")
    if (user_id is None) == (device_id is None):
        return admin_error(400, "bad_request", "give exactly one of `user_id`, `device_id`")
    selector = user_id if user_id is not None else device_id
    if not _ID.match(selector or ""):
        return admin_error(400, "bad_request", "the id must be 1-256 characters, no spaces")
    gateway = state()
    lifetimes = gateway.settings.sessions
    store = SqlSessionStore(
        gateway.core.database, idle_ttl=lifetimes.idle_ttl, absolute_ttl=lifetimes.absolute_ttl
    )
    found = store.list(user_id=user_id, device_id=device_id)
    now = datetime.now(UTC)
    response = jsonify({"sessions": [s.to_json(now) for s in found]})
    response.headers["Cache-Control"] = "no-store"
    return response, 200
