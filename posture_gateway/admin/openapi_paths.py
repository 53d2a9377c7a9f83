"""OpenAPI path items of the device administration API (:mod:`.devices_api`), published as
that module's ``OPENAPI_PATHS`` (merged into ``/openapi.json``; the coverage test fails when
a route is missing here). Schemas follow :mod:`posture_gateway.api.openapi_device_admin`.
"""

from __future__ import annotations

from typing import Any

from mdm_core.device.command_model import CommandStatus, CommandType
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from posture_gateway.api.openapi_parts import ADMIN_SECURITY as _ADMIN
from posture_gateway.api.openapi_parts import ERROR as _ERROR
from posture_gateway.api.openapi_parts import json_body as _body
from posture_gateway.api.openapi_parts import json_response as _json

__all__ = ["DEVICE_ADMIN_PATHS"]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_PATH_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:@+=-]{1,64}$"}
_QUERY_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:@/+=-]{1,256}$"}
_TEXT = {
    400: "Malformed JSON, an unknown, missing or mistyped field, a bad parameter",
    401: "No, malformed or refused token (a named admin's token is required)",
    403: "The caller's role may not do this (audited)",
    404: "Unknown device, command or wipe request",
    405: "Method not allowed",
    409: "Refused by the device's state or ownership, or the two-person rule (audited)",
    413: "Body too large",
    422: "A command payload that does not validate",
    503: "The store is unavailable; retry",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_TEXT[code], _ERROR) for code in codes}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _PATH_ID}


_TS = {"type": ["string", "null"], "format": "date-time"}
_DEVICE = {
    "type": "object",
    "properties": {
        "id": _STR,
        "user_id": _STR,
        "platform": {"enum": [p.value for p in Platform]},
        "ownership": {"enum": [o.value for o in Ownership]},
        "status": {"enum": [s.value for s in DeviceStatus]},
        "status_reason": _NSTR,
        "serial_number": _NSTR,
        "enrolled_at": _TS,
        "last_checkin_at": _TS,
    },
    "required": ["id", "user_id", "platform", "ownership", "status"],
}
_TRANSITION = {
    "type": "object",
    "properties": {
        "from": {"enum": [None, *[s.value for s in CommandStatus]]},
        "to": {"enum": [s.value for s in CommandStatus]},
        "at": _TS,
        "detail": _NSTR,
        "attempts": {"type": "integer"},
    },
    "required": ["to", "at"],
}
_COMMAND = {
    "type": "object",
    "properties": {
        "id": _STR,
        "device_id": _STR,
        "type": {"enum": [t.value for t in CommandType]},
        "payload": {"type": "object"},
        "priority": {"type": "integer"},
        "status": {"enum": [s.value for s in CommandStatus]},
        "attempts": {"type": "integer"},
        "error": _NSTR,
        "created_by": _STR,
        "created_at": _TS,
        "updated_at": _TS,
        "delivered_at": _TS,
        "acknowledged_at": _TS,
        "transitions": {"type": "array", "items": _TRANSITION},
    },
    "required": ["id", "device_id", "type", "status", "created_by", "created_at"],
}
_WIPE_REQUEST = {
    "type": "object",
    "properties": {
        "id": _STR,
        "device_id": _STR,
        "user_id": _STR,
        "status": {"enum": ["pending_approval", "queued", "rejected", "cancelled"]},
        "requested_by": _STR,
        "reason": _STR,
        "approvals": {"type": "array", "items": _STR},
        "command_id": _NSTR,
        "closed_by": _NSTR,
        "close_reason": _NSTR,
        "created_at": _STR,
        "updated_at": _STR,
    },
    "required": ["id", "device_id", "status", "requested_by", "approvals", "command_id"],
}
_REASON = {
    "type": "object",
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
    "required": ["reason"],
    "additionalProperties": False,
}
_COMMAND_ANSWER = {
    "type": "object",
    "properties": {"command": _COMMAND},
    "required": ["command"],
}
_WIPE_ANSWER = {
    "type": "object",
    "properties": {"wipe_request": _WIPE_REQUEST},
    "required": ["wipe_request"],
}


#: Optional ``Idempotency-Key`` of the command-queuing routes (lock, selective wipe).
_IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same admin, key and device again returns the command already "
    "queued; the same key for a different command is 409 idempotency_conflict",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
}


def _op(
    op_id: str, summary: str, role: str, responses: dict[str, Any], **more: Any
) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "description": f"Role: {role} (a named admin's token; the shared admin token is "
        "refused). Audited with admin:<name>, refusals included.",
        "tags": ["admin"],
        "security": _ADMIN,
        "responses": responses,
        **more,
    }


DEVICE_ADMIN_PATHS: dict[str, Any] = {
    "/admin/api/devices": {
        "get": _op(
            "adminListDevices",
            "Devices, by user, status and ownership; a bounded page and a cursor",
            "helpdesk",
            {
                "200": _json(
                    "A page of devices ordered by id; next_cursor null on the last page",
                    {
                        "type": "object",
                        "properties": {
                            "devices": {"type": "array", "items": _DEVICE},
                            "next_cursor": _NSTR,
                        },
                        "required": ["devices", "next_cursor"],
                    },
                ),
                **_errors(400, 401, 403, 503),
            },
            parameters=[
                {"name": "user_id", "in": "query", "required": False, "schema": _QUERY_ID},
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": [s.value for s in DeviceStatus]},
                },
                {
                    "name": "ownership",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": [o.value for o in Ownership]},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
                },
            ],
        )
    },
    "/admin/api/devices/{device_id}": {
        "get": _op(
            "adminShowDevice",
            "A device: its record, latest posture summary, compliance state, wipe requests",
            "helpdesk",
            {
                "200": _json(
                    "The device",
                    {
                        "type": "object",
                        "properties": {
                            "device": _DEVICE,
                            "posture": {"type": ["object", "null"]},
                            "compliance": {
                                "type": "object",
                                "properties": {"state": _STR, "outcome": _NSTR},
                                "required": ["state"],
                            },
                            "wipe_requests": {"type": "array", "items": _WIPE_REQUEST},
                        },
                        "required": ["device", "posture", "compliance", "wipe_requests"],
                    },
                ),
                **_errors(400, 401, 403, 404, 503),
            },
            parameters=[_path("device_id")],
        )
    },
    "/admin/api/devices/{device_id}/commands": {
        "get": _op(
            "adminDeviceCommands",
            "Every command of a device (newest first, up to 100) with its status, "
            "timestamps and transitions",
            "helpdesk",
            {
                "200": _json(
                    "The commands",
                    {
                        "type": "object",
                        "properties": {
                            "device_id": _STR,
                            "commands": {"type": "array", "items": _COMMAND},
                        },
                        "required": ["device_id", "commands"],
                    },
                ),
                **_errors(400, 401, 403, 404, 503),
            },
            parameters=[_path("device_id")],
        )
    },
    "/admin/api/devices/{device_id}/lock": {
        "post": _op(
            "adminLockDevice",
            "Queue a lock, with a message and a phone number for whoever finds the device",
            "helpdesk",
            {
                "202": _json("The lock command, queued", _COMMAND_ANSWER),
                **_errors(400, 401, 403, 404, 409, 413, 422, 503),
            },
            parameters=[_path("device_id"), _IDEMPOTENCY_KEY],
            requestBody=_body(
                {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string", "maxLength": 500},
                        "phone_number": {
                            "type": "string",
                            "pattern": "^\\+?[0-9][0-9 ()\\-.]{2,31}$",
                        },
                    },
                    "additionalProperties": False,
                },
                required=False,
            ),
        )
    },
    "/admin/api/devices/{device_id}/wipe": {
        "post": _op(
            "adminWipeDevice",
            "Ask for a full wipe: corporate devices only; queued at once, or pending a "
            "second admin's approval when the offboarding policy has two_person_rule",
            "admin",
            {
                "202": _json("The wipe request (queued or pending_approval)", _WIPE_ANSWER),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
            parameters=[_path("device_id")],
            requestBody=_body(_REASON),
        )
    },
    "/admin/api/devices/{device_id}/selective-wipe": {
        "post": _op(
            "adminSelectiveWipeDevice",
            "Queue a selective wipe: the work container and only what the MDM installed "
            "(managed apps, certificates, configurations), never personal data",
            "admin",
            {
                "202": _json("The selective_wipe command, queued", _COMMAND_ANSWER),
                **_errors(400, 401, 403, 404, 409, 413, 422, 503),
            },
            parameters=[_path("device_id"), _IDEMPOTENCY_KEY],
            requestBody=_body(_REASON),
        )
    },
    "/admin/api/devices/{device_id}/retire": {
        "post": _op(
            "adminRetireDevice",
            "Retire a device: its certificates revoked, its sessions and tokens ended",
            "admin",
            {
                "200": _json(
                    "Retired",
                    {
                        "type": "object",
                        "properties": {
                            "device": _DEVICE,
                            "revoked_certificates": {"type": "array", "items": _STR},
                        },
                        "required": ["device", "revoked_certificates"],
                    },
                ),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
            parameters=[_path("device_id")],
            requestBody=_body(_REASON),
        )
    },
    "/admin/api/commands/{command_id}/cancel": {
        "post": _op(
            "adminCancelCommand",
            "Cancel a command that is not final yet (queued, delivered or not_now)",
            "admin",
            {
                "200": _json("The cancelled command", _COMMAND_ANSWER),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
            parameters=[_path("command_id")],
            requestBody=_body(
                {
                    "type": "object",
                    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
                    "additionalProperties": False,
                },
                required=False,
            ),
        )
    },
    "/admin/api/wipe-requests": {
        "get": _op(
            "adminListWipeRequests",
            "Full-wipe requests, newest first, by device and status",
            "helpdesk",
            {
                "200": _json(
                    "The requests",
                    {
                        "type": "object",
                        "properties": {"wipe_requests": {"type": "array", "items": _WIPE_REQUEST}},
                        "required": ["wipe_requests"],
                    },
                ),
                **_errors(400, 401, 403, 503),
            },
            parameters=[
                {"name": "device_id", "in": "query", "required": False, "schema": _QUERY_ID},
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["pending_approval", "queued", "rejected", "cancelled"]},
                },
            ],
        )
    },
    "/admin/api/wipe-requests/{request_id}/approve": {
        "post": _op(
            "adminApproveWipeRequest",
            "Sign a pending full-wipe request as the second, different admin (the wipe is "
            "then queued); the requester cannot approve their own request",
            "admin",
            {
                "200": _json("The request (queued once two admins signed)", _WIPE_ANSWER),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
            parameters=[_path("request_id")],
            requestBody=_body({"type": "object", "additionalProperties": False}, required=False),
        )
    },
    "/admin/api/wipe-requests/{request_id}/reject": {
        "post": _op(
            "adminRejectWipeRequest",
            "Reject a pending full-wipe request (nothing is queued)",
            "admin",
            {
                "200": _json("The rejected request", _WIPE_ANSWER),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
            parameters=[_path("request_id")],
            requestBody=_body(_REASON),
        )
    },
}
