"""OpenAPI path items of the device protocol (``/mdm/v1/*``, served by ``mdm_core.api``) and
of the admin JSON API (``/admin/api/*``), keyed by blueprint name.

``mdm_core`` cannot import the gateway's document builder (imports point one way), so the
gateway describes the device protocol here, from the views' contracts (their module
docstrings in :mod:`mdm_core.api.checkin_views` and :mod:`mdm_core.api.enrollment_views`);
:func:`posture_gateway.api.openapi.build_document` merges these with every other blueprint's
paths, and the coverage test fails when a route of either blueprint is missing here.
"""

from __future__ import annotations

from typing import Any

from mdm_core.device.commands import CommandStatus, CommandType
from mdm_core.posture.model import Ownership, Platform
from mdm_core.posture.normalize import FORMATS
from posture_gateway.api.openapi_parts import ADMIN_SECURITY as _ADMIN
from posture_gateway.api.openapi_parts import ERROR as _ERROR
from posture_gateway.api.openapi_parts import json_body as _body
from posture_gateway.api.openapi_parts import json_response as _json

__all__ = ["BLUEPRINT_PATHS", "SECURITY_SCHEMES"]

_STR = {"type": "string"}
_DEVICE: list[dict[str, list[str]]] = [{"deviceProof": []}]


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON, a missing or mistyped field",
        401: "Refused credential (the error code is the refusal reason)",
        403: "Refused: not allowed for this device, ownership or platform",
        404: "Unknown id",
        409: "Illegal state transition",
        413: "Body too large",
        415: "The body must be application/json",
        422: "A report or payload that does not validate",
        429: "Too many refused attempts from this source or for this target (Retry-After)",
        503: "Cannot answer now: the store or the limiter is down (fail closed, Retry-After)",
    }
    return {str(code): _json(text[code], _ERROR) for code in codes}


_ENROLLED = {
    "type": "object",
    "properties": {
        "device_id": _STR,
        "certificate": {"type": "string", "description": "PEM device certificate"},
        "ca_certificate": {"type": "string", "description": "PEM CA certificate"},
        "checkin_url": _STR,
        "status": _STR,
        "re_enrolled": {"type": "boolean"},
    },
    "required": ["device_id", "certificate", "ca_certificate", "checkin_url", "status"],
}
_COMMAND = {
    "type": "object",
    "properties": {
        "id": _STR,
        "type": {"enum": [t.value for t in CommandType]},
        "payload": {"type": "object"},
    },
    "required": ["id", "type", "payload"],
}
_NOTICE = {
    "type": "object",
    "properties": {
        "profile": _STR,
        "ownership": {"enum": [o.value for o in Ownership]},
        "description": {"type": ["string", "null"]},
        "can_see": {"type": "array", "items": _STR},
        "cannot_see": {"type": "array", "items": _STR},
        "collected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": _STR, "label": _STR},
                "required": ["field", "label"],
            },
        },
    },
    "required": ["profile", "ownership", "can_see", "cannot_see", "collected"],
}

_MDM_CHECKIN: dict[str, Any] = {
    "/mdm/v1/checkin": {
        "post": {
            "operationId": "mdmCheckin",
            "summary": "Device check-in: a posture report in, waiting commands out",
            "tags": ["device"],
            "security": _DEVICE,
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {
                        "format": {"enum": list(FORMATS)},
                        "report": {"type": "object"},
                    },
                    "required": ["format", "report"],
                }
            ),
            "responses": {
                "200": _json(
                    "Accepted; the commands waiting for the device",
                    {
                        "type": "object",
                        "properties": {
                            "commands": {"type": "array", "items": _COMMAND},
                            "collect": {"type": "array", "items": _STR},
                            "next_checkin_s": {"type": "integer"},
                            "compliance": {"type": "object"},
                            "seq": {"type": "integer"},
                        },
                        "required": ["commands", "collect", "next_checkin_s", "compliance"],
                    },
                ),
                **_errors(400, 401, 413, 415, 422, 503),
            },
        }
    },
    "/mdm/v1/commands/{command_id}/result": {
        "post": {
            "operationId": "mdmCommandResult",
            "summary": "The device's answer to a delivered command",
            "tags": ["device"],
            "security": _DEVICE,
            "parameters": [{"name": "command_id", "in": "path", "required": True, "schema": _STR}],
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["acknowledged", "error", "not_now"]},
                        "detail": {"type": "string", "maxLength": 2000},
                    },
                    "required": ["status"],
                }
            ),
            "responses": {
                "200": _json(
                    "Recorded (repeating the same answer is a no-op)",
                    {
                        "type": "object",
                        "properties": {
                            "id": _STR,
                            "status": {"enum": [s.value for s in CommandStatus]},
                        },
                        "required": ["id", "status"],
                    },
                ),
                **_errors(400, 401, 404, 409, 413, 415, 422, 503),
            },
        }
    },
    "/mdm/v1/commands/wait": {
        "get": {
            "operationId": "mdmWaitForCommands",
            "summary": "Long-poll: answers as soon as a command is queued for the device",
            "tags": ["device"],
            "security": _DEVICE,
            "parameters": [
                {
                    "name": "timeout",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 60},
                }
            ],
            "responses": {
                "200": _json(
                    "How many commands wait (0 after the timeout)",
                    {
                        "type": "object",
                        "properties": {"pending": {"type": "integer", "minimum": 0}},
                        "required": ["pending"],
                    },
                ),
                **_errors(400, 401, 413, 415, 503),
            },
        }
    },
    "/mdm/v1/privacy-notice": {
        "get": {
            "operationId": "mdmPrivacyNotice",
            "summary": "The transparency notice in force, as JSON (the agent shows it "
            "before a BYOD enrollment; people read /privacy)",
            "tags": ["device"],
            "security": [],
            "parameters": [
                {
                    "name": "ownership",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": [o.value for o in Ownership]},
                }
            ],
            "responses": {"200": _json("The notice", _NOTICE), **_errors(400)},
        }
    },
}

_MDM_ENROLLMENT: dict[str, Any] = {
    "/mdm/v1/enroll": {
        "post": {
            "operationId": "mdmEnroll",
            "summary": "Enroll a device: a CSR and a single-use token or registered serial",
            "tags": ["device"],
            "security": [],
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {
                        "csr": {"type": "string", "description": "PEM PKCS#10, P-256 key"},
                        "platform": {"enum": [p.value for p in Platform]},
                        "ownership": {"enum": [o.value for o in Ownership]},
                        "token": _STR,
                        "serial_number": _STR,
                        "enrollment_secret": {
                            "type": "string",
                            "description": "The serial's enrollment secret (with serial_number)",
                        },
                        "privacy_notice_accepted": {
                            "type": "string",
                            "description": "The id of the notice accepted (required for byod)",
                        },
                        "device_id": {"type": "string", "description": "Re-enroll this device"},
                    },
                    "required": ["csr", "platform", "ownership"],
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "201": _json("Enrolled", _ENROLLED),
                **_errors(400, 401, 403, 413, 415, 422, 429, 503),
            },
        }
    },
    "/mdm/v1/renew": {
        "post": {
            "operationId": "mdmRenew",
            "summary": "Renew the device certificate (the old one is revoked)",
            "tags": ["device"],
            "security": _DEVICE,
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {"csr": _STR},
                    "required": ["csr"],
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": _json("Renewed", _ENROLLED),
                **_errors(400, 401, 403, 413, 415, 422, 503),
            },
        }
    },
    "/mdm/v1/ca": {
        "get": {
            "operationId": "mdmCaCertificate",
            "summary": "The device CA certificate (PEM), for devices and mTLS proxies",
            "tags": ["device"],
            "security": [],
            "responses": {
                "200": {
                    "description": "PEM certificate",
                    "content": {"application/x-pem-file": {"schema": _STR}},
                }
            },
        }
    },
}

_ID_PARAM = {"type": "string", "pattern": "^[A-Za-z0-9._:@/+=-]{1,256}$"}
_ADMIN_ERRORS = {
    "400": _json("Bad query parameter", _ERROR),
    "401": _json("No or wrong admin token", _ERROR),
    "403": _json("The admin API is disabled (no admin token configured)", _ERROR),
}
_ADMIN_API: dict[str, Any] = {
    "/admin/api/what-if": {
        "get": {
            "operationId": "adminWhatIf",
            "summary": "Explain the decision a user would get on a device for an app",
            "tags": ["admin"],
            "security": _ADMIN,
            "parameters": [
                {"name": "user", "in": "query", "required": True, "schema": _ID_PARAM},
                {"name": "device", "in": "query", "required": True, "schema": _ID_PARAM},
                {
                    "name": "app",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,512}$"},
                },
            ],
            "responses": {
                "200": _json(
                    "The input as understood and the decision",
                    {
                        "type": "object",
                        "properties": {"input": {"type": "object"}, "decision": {"type": "object"}},
                        "required": ["input", "decision"],
                    },
                ),
                **_ADMIN_ERRORS,
                "503": _json("No valid policy set is loaded", _ERROR),
            },
        }
    },
    "/admin/api/policies": {
        "get": {
            "operationId": "adminPolicies",
            "summary": "The policy set in force and whether the files on disk validate",
            "tags": ["admin"],
            "security": _ADMIN,
            "responses": {
                "200": _json(
                    "Policy set status",
                    {
                        "type": "object",
                        "properties": {
                            "directory": _STR,
                            "fingerprint": {"type": ["string", "null"]},
                            "loaded_at": {"type": ["string", "null"]},
                            "last_attempt_at": {"type": ["string", "null"]},
                            "healthy": {"type": "boolean"},
                            "errors": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "file": _STR,
                                        "line": {"type": ["integer", "null"]},
                                        "reason": _STR,
                                    },
                                },
                            },
                        },
                        "required": ["healthy", "errors"],
                    },
                ),
                **_ADMIN_ERRORS,
            },
        }
    },
    "/admin/api/sessions": {
        "get": {
            "operationId": "adminSessions",
            "summary": "The SSO sessions of a user or of a device (live and ended)",
            "tags": ["admin"],
            "security": _ADMIN,
            "parameters": [
                {"name": "user_id", "in": "query", "required": False, "schema": _ID_PARAM},
                {"name": "device_id", "in": "query", "required": False, "schema": _ID_PARAM},
            ],
            "description": "Exactly one of user_id, device_id. Newest first.",
            "responses": {
                "200": _json(
                    "The sessions",
                    {
                        "type": "object",
                        "properties": {
                            "sessions": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": _STR,
                                        "user_id": _STR,
                                        "device_id": _STR,
                                        "auth_time": _STR,
                                        "acr": _STR,
                                        "amr": {"type": "array", "items": _STR},
                                        "created_at": _STR,
                                        "last_seen_at": _STR,
                                        "idle_expires_at": _STR,
                                        "absolute_expires_at": _STR,
                                        "revoked_at": {"type": ["string", "null"]},
                                        "revoked_reason": {"type": ["string", "null"]},
                                        "live": {"type": "boolean"},
                                    },
                                    "required": ["id", "user_id", "device_id", "live"],
                                },
                            }
                        },
                        "required": ["sessions"],
                    },
                ),
                **_ADMIN_ERRORS,
            },
        }
    },
}

#: Path items by blueprint name, merged into the document when the blueprint is registered.
BLUEPRINT_PATHS: dict[str, dict[str, Any]] = {
    "mdm_checkin": _MDM_CHECKIN,
    "mdm_enrollment": _MDM_ENROLLMENT,
    "admin_api": _ADMIN_API,
}

SECURITY_SCHEMES: dict[str, Any] = {
    "deviceProof": {
        "type": "apiKey",
        "in": "header",
        "name": "Device-Proof",
        "description": "A request proof JWT signed by the enrolled device key over the method, "
        "URL and body hash (RFC 9449 style); also accepted as "
        "`Authorization: DeviceProof <jwt>`",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A named admin's token (pga_<id>_<secret>, from `posture admin add`); "
        "the legacy shared settings.admin_token only on what-if, policies and sessions",
    },
}
