"""OpenAPI path items of the offboarding admin API (:mod:`posture_gateway.offboarding.api`).

:func:`posture_gateway.api.openapi.build_document` reads ``OPENAPI_PATHS`` and
``OPENAPI_MODELS`` from the blueprint's module, which re-exports these.
"""

from __future__ import annotations

from typing import Any

from mdm_core.device.command_model import CommandStatus
from mdm_core.offboarding.model import Action, DeviceState, JobStatus
from posture_gateway.api.openapi_parts import ADMIN_SECURITY as _ADMIN
from posture_gateway.api.openapi_parts import ERROR as _ERROR
from posture_gateway.api.openapi_parts import json_body as _body
from posture_gateway.api.openapi_parts import json_response as _json

__all__ = ["OPENAPI_PATHS"]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TS = {"type": ["string", "null"], "format": "date-time"}
_TAGS = ["admin", "offboarding"]
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}


_ERRORS = {
    400: "Malformed JSON, a missing, unknown or mistyped field",
    401: "No, malformed or refused token (a named admin's token is required)",
    403: "The caller's role may not do this (audited)",
    404: "Unknown user, job, or a user who is not offboarded",
    409: "The job already started (only a scheduled job can be cancelled)",
    413: "Body too large",
    503: "The store is unavailable (nothing changed)",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json(_ERRORS[c], _ERROR) for c in codes}


_USER_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:@-]{1,128}$"}
_REASON = {"type": "string", "minLength": 1, "maxLength": 256}
_JOB = {
    "type": "object",
    "properties": {
        "id": _STR,
        "user_id": _STR,
        "username": _NSTR,
        "groups": {"type": "array", "items": _STR},
        "trigger": _STR,
        "source_ref": _NSTR,
        "actor": _STR,
        "reason": _NSTR,
        "status": {"enum": [s.value for s in JobStatus]},
        "effective_at": _TS,
        "created_at": _TS,
        "updated_at": _TS,
        "started_at": _TS,
        "finished_at": _TS,
    },
    "required": ["id", "user_id", "trigger", "status", "effective_at"],
}
_COMMAND = {
    "type": "object",
    "properties": {
        "id": _STR,
        "type": _STR,
        "status": {"enum": [s.value for s in CommandStatus]},
        "error": _NSTR,
        "times": {
            "type": "object",
            "description": "When the command first entered each state",
            "additionalProperties": {"type": "string", "format": "date-time"},
        },
    },
    "required": ["id", "type", "status", "times"],
}
_DEVICE = {
    "type": "object",
    "properties": {
        "device_id": _STR,
        "ownership": _STR,
        "action": {"enum": [a.value for a in Action]},
        "state": {"enum": [s.value for s in DeviceState]},
        "detail": _NSTR,
        "updated_at": _TS,
        "wipe_request_id": _NSTR,
        "wipe_request_status": _NSTR,
        "commands": {"type": "array", "items": _COMMAND},
    },
    "required": ["device_id", "action", "state", "commands"],
}
_REPORT = {
    **_JOB,
    "properties": {
        **_JOB["properties"],  # type: ignore[dict-item]
        "logins_blocked": {"type": "boolean"},
        "devices": {"type": "array", "items": _DEVICE},
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/admin/api/offboarding": {
        "post": {
            "operationId": "startOffboarding",
            "summary": "Start (or find) a user's offboarding (admin role)",
            "description": "Effective now (no `effective_at`, or a past one): logins blocked, "
            "sessions and tokens revoked, one command per device queued by the offboarding "
            "policy. A future `effective_at` is scheduled and cancellable. Idempotent: the "
            "user's open job is returned as is.",
            "tags": _TAGS,
            "security": _ADMIN,
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {
                        "user_id": _USER_ID,
                        "effective_at": {"type": "string", "format": "date-time"},
                        "reason": _REASON,
                    },
                    "required": ["user_id", "reason"],
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": _json("The job", _JOB),
                **_errors(400, 401, 403, 404, 413, 503),
            },
        },
        "get": {
            "operationId": "offboardingStatus",
            "summary": "A user's offboarding jobs, per device what was queued, delivered, "
            "acknowledged or failed, with times (helpdesk role)",
            "tags": _TAGS,
            "security": _ADMIN,
            "parameters": [
                {"name": "user_id", "in": "query", "required": True, "schema": _USER_ID}
            ],
            "responses": {
                "200": _json(
                    "The jobs",
                    {
                        "type": "object",
                        "properties": {
                            "user_id": _STR,
                            "logins_blocked": {"type": "boolean"},
                            "jobs": {"type": "array", "items": _REPORT},
                        },
                        "required": ["user_id", "logins_blocked", "jobs"],
                    },
                ),
                **_errors(400, 401, 403, 503),
            },
        },
    },
    "/admin/api/offboarding/{job_id}/cancel": {
        "post": {
            "operationId": "cancelOffboarding",
            "summary": "Cancel a scheduled offboarding (admin role; refused once started)",
            "tags": _TAGS,
            "security": _ADMIN,
            "parameters": [_JOB_ID],
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {"reason": _REASON},
                    "required": ["reason"],
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": _json("The cancelled job", _JOB),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
        },
    },
    "/admin/api/offboarding/reinstate": {
        "post": {
            "operationId": "reinstateOffboardedUser",
            "summary": "Lift an offboarded user's login and enrollment block (admin role)",
            "description": "Also ends the user's open job: a scheduled one is cancelled; a "
            "running one is halted, every command its devices have not acknowledged is "
            "cancelled and a full wipe waiting for approval is withdrawn. docs/offboarding.md.",
            "tags": _TAGS,
            "security": _ADMIN,
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {"user_id": _USER_ID, "reason": _REASON},
                    "required": ["user_id", "reason"],
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": _json(
                    "Reinstated",
                    {
                        "type": "object",
                        "properties": {"user_id": _STR, "reinstated": {"type": "boolean"}},
                        "required": ["user_id", "reinstated"],
                    },
                ),
                **_errors(400, 401, 403, 404, 413, 503),
            },
        },
    },
}
