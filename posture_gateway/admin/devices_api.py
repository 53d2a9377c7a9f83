"""The device administration API (``/admin/api/devices``, ``/admin/api/commands``,
``/admin/api/wipe-requests``): list and inspect devices and their commands, lock, wipe,
selectively wipe, retire, cancel a command, approve or reject a full-wipe request.

Every route needs a named admin (:mod:`.guard`; the shared admin token is refused here). Roles:
viewing and ``lock`` are ``helpdesk``; ``wipe``, ``selective-wipe``, ``retire``, cancelling a
command and approving or rejecting a wipe request are ``admin``. Whatever the role, the core
decides what a device allows: a full wipe only on a corporate device and, when the
offboarding policy says so, only after a second, different admin approved
(:class:`mdm_core.device.wipes.WipeService`). Every action is audited with ``admin:<name>``
(by the service that carries it out); every refusal (role, ownership, state) is audited too
and changes nothing. Domain errors are JSON ``{"error": reason, "reason": text}`` with their
status (400, 404, 409, 422); answers are ``Cache-Control: no-store``. The OpenAPI path
items are :mod:`.openapi_paths`.

``lock`` and ``selective-wipe`` take an optional ``Idempotency-Key`` header (1-64 of
``A-Za-z0-9._:-``): the same admin sending the same key for the same device gets the command
it already queued (a double click or a retried request is one command); the same key for a
different command is 409 ``idempotency_conflict``. Keys are per admin: one admin's key never
answers with another admin's command.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException

from mdm_core.device.command_model import CommandType, NoSuchDevice
from mdm_core.device.selective_wipe import selective_wipe_payload
from mdm_core.domain.errors import MdmError
from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.posture.model import Ownership
from mdm_core.storage.sql.uow import SqlStorage
from mdm_core.support.json_input import loads_bounded
from posture_gateway.admin.device_views import (
    MAX_PAGE,
    BadCursor,
    DeviceFilter,
    command_json,
    decode_cursor,
    device_detail,
    device_json,
    list_devices,
)
from posture_gateway.admin.guard import (
    admin_error,
    audit_refusal,
    current_admin,
    install_admin_guard,
    require_role,
)
from posture_gateway.admin.openapi_paths import DEVICE_ADMIN_PATHS
from posture_gateway.admin.principals import Role
from posture_gateway.state import state

__all__ = ["bp", "OPENAPI_PATHS"]

#: Merged into /openapi.json by :func:`posture_gateway.api.openapi.build_document`.
OPENAPI_PATHS = DEVICE_ADMIN_PATHS

bp = Blueprint("admin_devices", __name__, url_prefix="/admin/api")
install_admin_guard(bp)

_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,256}$")
_B = TypeVar("_B", bound=BaseModel)
DEFAULT_PAGE = 50
MAX_COMMANDS = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LockBody(_Body):
    message: str | None = Field(default=None, max_length=500)
    phone_number: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()\-.]{2,31}$")


class ReasonBody(_Body):
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class OptionalReasonBody(_Body):
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class _Invalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _body(model: type[_B], *, empty_ok: bool) -> _B:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if not empty_ok:
            raise _Invalid("a JSON object body is required")
        data: Any = {}
    else:
        try:
            data = loads_bounded(raw)
        except ValueError:
            raise _Invalid("the body is not acceptable JSON") from None
    if not isinstance(data, dict):
        raise _Invalid("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise _Invalid(f"{where}: {err['msg']}") from None


def _ok(body: dict[str, Any], status: int = 200) -> tuple[Response, int]:
    return jsonify(body), status


def _storage() -> SqlStorage:
    return state().core.storage


_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _idempotency_key() -> str | None:
    """The command's idempotency key from the ``Idempotency-Key`` header, scoped to the
    admin (``None`` without the header; 400 for a malformed one)."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise _Invalid("Idempotency-Key must be 1-64 characters of A-Za-z0-9._:-")
    return f"{current_admin().actor}:{value}"


def _checked_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise _Invalid(f"{what} must be 1-256 characters, no spaces")
    return value


@bp.errorhandler(_Invalid)
def _invalid(exc: _Invalid) -> tuple[Response, int]:
    return admin_error(400, "bad_request", exc.reason)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    code = (exc.name or "error").lower().replace(" ", "_")
    return admin_error(exc.code or 400, code, exc.description or code)


@bp.errorhandler(MdmError)
def _domain_error(exc: MdmError) -> tuple[Response, int]:
    """A refusal by the core: its reason and status; audited when it refused an action."""
    status = exc.status if 400 <= exc.status < 500 else 503
    if request.method == "POST":
        try:
            principal = current_admin()
        except LookupError:
            principal = None
        if principal is not None:
            args = request.view_args or {}
            target = next(iter(args.values()), request.path)
            audit_refusal(
                principal, f"admin.{request.endpoint or 'unknown'}", str(target)[:128], exc.reason
            )
    return admin_error(status, exc.reason, exc.message)


# --- reading ------------------------------------------------------------------------------


@bp.get("/devices")
@require_role(Role.HELPDESK)
def list_view() -> tuple[Response, int]:
    args = request.args
    user_id = args.get("user_id")
    if user_id is not None:
        _checked_id(user_id, "user_id")
    status = args.get("status")
    if status is not None and status not in {s.value for s in DeviceStatus}:
        raise _Invalid(f"status must be one of {', '.join(s.value for s in DeviceStatus)}")
    ownership = args.get("ownership")
    if ownership is not None and ownership not in {o.value for o in Ownership}:
        raise _Invalid(f"ownership must be one of {', '.join(o.value for o in Ownership)}")
    raw_limit = args.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise _Invalid(f"limit must be an integer from 1 to {MAX_PAGE}")
    cursor = args.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except BadCursor as exc:
        raise _Invalid(str(exc)) from None
    with _storage().unit_of_work() as uow:
        found, next_cursor = list_devices(
            uow,
            DeviceFilter(user_id=user_id, status=status, ownership=ownership),
            limit=int(raw_limit),
            after=after,
        )
    return _ok({"devices": found, "next_cursor": next_cursor})


@bp.get("/devices/<device_id>")
@require_role(Role.HELPDESK)
def show_view(device_id: str) -> tuple[Response, int]:
    _checked_id(device_id, "device id")
    with _storage().unit_of_work() as uow:
        device = uow.devices.get(device_id)
        if device is None:
            raise NoSuchDevice(f"unknown device {device_id}")
        detail = device_detail(uow, device)
    detail["wipe_requests"] = [r.to_json() for r in state().core.wipes.list(device_id=device_id)]
    return _ok(detail)


@bp.get("/devices/<device_id>/commands")
@require_role(Role.HELPDESK)
def commands_view(device_id: str) -> tuple[Response, int]:
    _checked_id(device_id, "device id")
    with _storage().unit_of_work() as uow:
        if uow.devices.get(device_id) is None:
            raise NoSuchDevice(f"unknown device {device_id}")
        found = uow.commands.for_device(device_id, limit=MAX_COMMANDS)
        body = [command_json(c, uow.commands.transitions(c.id)) for c in found]
    return _ok({"device_id": device_id, "commands": body})


@bp.get("/wipe-requests")
@require_role(Role.HELPDESK)
def wipe_requests_view() -> tuple[Response, int]:
    device_id = request.args.get("device_id")
    if device_id is not None:
        _checked_id(device_id, "device_id")
    found = state().core.wipes.list(device_id=device_id, status=request.args.get("status"))
    return _ok({"wipe_requests": [r.to_json() for r in found]})


# --- acting -------------------------------------------------------------------------------


@bp.post("/devices/<device_id>/lock")
@require_role(Role.HELPDESK)
def lock_view(device_id: str) -> tuple[Response, int]:
    _checked_id(device_id, "device id")
    body = _body(LockBody, empty_ok=True)
    command = state().core.commands.enqueue(
        device_id,
        CommandType.LOCK.value,
        body.model_dump(exclude_none=True),
        created_by=current_admin().actor,
        idempotency_key=_idempotency_key(),
    )
    return _ok({"command": command.to_json()}, 202)


@bp.post("/devices/<device_id>/wipe")
@require_role(Role.ADMIN)
def wipe_view(device_id: str) -> tuple[Response, int]:
    _checked_id(device_id, "device id")
    body = _body(ReasonBody, empty_ok=False)
    wipe = state().core.wipes.request_full_wipe(
        device_id, requested_by=current_admin().actor, reason=body.reason
    )
    return _ok({"wipe_request": wipe.to_json()}, 202)


@bp.post("/devices/<device_id>/selective-wipe")
@require_role(Role.ADMIN)
def selective_wipe_view(device_id: str) -> tuple[Response, int]:
    _checked_id(device_id, "device id")
    body = _body(ReasonBody, empty_ok=False)
    key = _idempotency_key()
    core = state().core
    with core.storage.unit_of_work() as uow:
        if uow.devices.get(device_id) is None:
            raise NoSuchDevice(f"unknown device {device_id}")
        try:  # the configuration policies in force name what they installed, too
            policies = core.policies.current()
        except PolicySetUnavailable:
            policies = None  # what the device reports and the MDM queued still counts
        payload = selective_wipe_payload(uow, device_id, reason=body.reason, policies=policies)
        command = core.commands.enqueue(
            device_id,
            CommandType.SELECTIVE_WIPE.value,
            payload,
            created_by=current_admin().actor,
            idempotency_key=key,
            uow=uow,
        )
    return _ok({"command": command.to_json()}, 202)


@bp.post("/devices/<device_id>/retire")
@require_role(Role.ADMIN)
def retire_view(device_id: str) -> tuple[Response, int]:
    _checked_id(device_id, "device id")
    body = _body(ReasonBody, empty_ok=False)
    core = state().core
    revoked = core.enrollment.revoke_device(
        device_id, actor=current_admin().actor, reason=body.reason
    )
    with core.storage.unit_of_work() as uow:
        device = uow.devices.get(device_id)
    assert device is not None  # revoke_device raised NotFound otherwise
    return _ok({"device": device_json(device), "revoked_certificates": revoked})


@bp.post("/commands/<command_id>/cancel")
@require_role(Role.ADMIN)
def cancel_view(command_id: str) -> tuple[Response, int]:
    _checked_id(command_id, "command id")
    body = _body(OptionalReasonBody, empty_ok=True)
    actor = current_admin().actor
    core = state().core
    at = datetime.now(UTC)
    with core.storage.unit_of_work() as uow:
        command = core.commands.cancel(command_id, by=actor, reason=body.reason, now=at, uow=uow)
        uow.audit.record(
            actor,
            "command.cancelled",
            command.device_id,
            "ok",
            {"command_id": command.id, "type": command.type.value, "reason": body.reason},
            at=at,
        )
    return _ok({"command": command.to_json()})


@bp.post("/wipe-requests/<request_id>/approve")
@require_role(Role.ADMIN)
def approve_view(request_id: str) -> tuple[Response, int]:
    _checked_id(request_id, "wipe request id")
    _body(_Body, empty_ok=True)  # no fields; anything given is a mistake
    wipe = state().core.wipes.approve(request_id, approver=current_admin().actor)
    return _ok({"wipe_request": wipe.to_json()})


@bp.post("/wipe-requests/<request_id>/reject")
@require_role(Role.ADMIN)
def reject_view(request_id: str) -> tuple[Response, int]:
    _checked_id(request_id, "wipe request id")
    body = _body(ReasonBody, empty_ok=False)
    wipe = state().core.wipes.reject(request_id, by=current_admin().actor, reason=body.reason)
    return _ok({"wipe_request": wipe.to_json()})
