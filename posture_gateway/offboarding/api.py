"""The offboarding admin API: ``/admin/api/offboarding`` (named admins only).

- ``POST /admin/api/offboarding`` ``{user_id, effective_at?, reason}`` (admin): start (or
  find) the user's offboarding, trigger ``admin``; an ``effective_at`` in the future is
  scheduled. 200 with the job.
- ``GET /admin/api/offboarding?user_id=U`` (helpdesk): every job of the user, per device the
  action, the state, and each command's states with their times.
- ``POST /admin/api/offboarding/<job_id>/cancel`` ``{reason}`` (admin): only while
  scheduled (else 409 ``offboarding_started``).
- ``POST /admin/api/offboarding/reinstate`` ``{user_id, reason}`` (admin): lift the login and
  enrollment block and stop the open job (its unacknowledged commands cancelled).

Authentication and roles: :func:`posture_gateway.admin.guard.install_admin_guard` and
:func:`~posture_gateway.admin.guard.require_role`; the shared admin token opens none of these.
Every change is audited by the service with the admin as actor. Errors are JSON
``{"error": code, "reason": text}``; bad input changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdm_core.domain.errors import MdmError
from mdm_core.offboarding.model import check_user_id
from posture_gateway.admin.guard import (
    admin_error,
    current_admin,
    install_admin_guard,
    require_role,
)
from posture_gateway.admin.principals import Role
from posture_gateway.offboarding.openapi import OPENAPI_PATHS
from posture_gateway.state import state

__all__ = ["bp", "OPENAPI_PATHS"]

bp = Blueprint("offboarding_admin", __name__, url_prefix="/admin/api/offboarding")
install_admin_guard(bp)

_USER = r"^[A-Za-z0-9._:@-]{1,128}$"
_JOB = re.compile(r"^[0-9a-f]{32}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StartBody(_Strict):
    user_id: str = Field(pattern=_USER)
    effective_at: datetime | None = Field(default=None, strict=False)
    reason: str = Field(min_length=1, max_length=256)


class CancelBody(_Strict):
    reason: str = Field(min_length=1, max_length=256)


class ReinstateBody(_Strict):
    user_id: str = Field(pattern=_USER)
    reason: str = Field(min_length=1, max_length=256)


def _body(model: type[_Strict]) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return admin_error(400, "bad_request", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        return admin_error(400, "bad_request", f"{where}: {err['msg']}")


def _mdm_error(err: MdmError) -> tuple[Response, int]:
    return admin_error(err.status, err.reason, err.message)


bp.register_error_handler(MdmError, _mdm_error)


@bp.post("")
@require_role(Role.ADMIN)
def start_view() -> Any:
    body = _body(StartBody)
    if not isinstance(body, StartBody):
        return body
    if body.effective_at is not None and body.effective_at.tzinfo is None:
        return admin_error(400, "bad_request", "effective_at must carry a time zone")
    core = state().core
    with core.storage.unit_of_work() as uow:
        job = core.offboarding.request(
            uow,
            user_id=body.user_id,
            trigger="admin",
            source_ref=None,
            effective_at=body.effective_at,
            actor=current_admin().actor,
            reason=body.reason,
        )
    return jsonify(job.to_json()), 200


@bp.get("")
@require_role(Role.HELPDESK)
def status_view() -> Any:
    user_id = request.args.get("user_id", "")
    if not re.match(_USER, user_id):
        return admin_error(400, "bad_request", "`user_id` is required (1-128 of A-Za-z0-9._:@-)")
    reports = state().core.offboarding.status(check_user_id(user_id))
    with state().core.storage.unit_of_work() as uow:
        blocked = uow.offboarding.blocked(user_id) is not None
    return jsonify(
        {"user_id": user_id, "logins_blocked": blocked, "jobs": [r.to_json() for r in reports]}
    ), 200


@bp.post("/<job_id>/cancel")
@require_role(Role.ADMIN)
def cancel_view(job_id: str) -> Any:
    if not _JOB.match(job_id):
        return admin_error(404, "unknown_offboarding_job", "no such offboarding job")
    body = _body(CancelBody)
    if not isinstance(body, CancelBody):
        return body
    job = state().core.offboarding.cancel(job_id, actor=current_admin().actor, reason=body.reason)
    return jsonify(job.to_json()), 200


@bp.post("/reinstate")
@require_role(Role.ADMIN)
def reinstate_view() -> Any:
    body = _body(ReinstateBody)
    if not isinstance(body, ReinstateBody):
        return body
    state().core.offboarding.reinstate(
        body.user_id, actor=current_admin().actor, reason=body.reason
    )
    return jsonify({"user_id": body.user_id, "reinstated": True}), 200
