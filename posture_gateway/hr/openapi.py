"""The HR webhooks' entries in ``/openapi.json`` (path items, hand-written; the request
bodies' schemas come from the pydantic models)."""

from __future__ import annotations

from typing import Any

from posture_gateway.api.openapi_parts import ERROR as _ERROR
from posture_gateway.api.openapi_parts import json_response as _json
from posture_gateway.hr.payloads import BambooPayload, GenericEvent
from posture_gateway.hr.service import OUTCOMES

__all__ = [
    "WEBHOOK_PATHS",
    "ADMIN_PATHS",
    "WEBHOOK_MODELS",
    "WEBHOOK_SECURITY_SCHEMES",
]

WEBHOOK_MODELS = (BambooPayload, GenericEvent)

_NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
_RECORD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "enum": ["bamboohr", "generic"]},
        "delivery_key": {"type": "string"},
        "seq": {"type": "integer"},
        "employee_ref": {"type": "string"},
        "user_id": _NULLABLE_STR,
        "event": {"type": "string", "enum": ["offboard", "cancel", "ignore", "invalid"]},
        "outcome": {"type": "string", "enum": list(OUTCOMES)},
        "job_id": _NULLABLE_STR,
        "source_ref": _NULLABLE_STR,
        "effective_at": {"type": ["string", "null"], "format": "date-time"},
        "detail": {"type": "object"},
        "received_at": {"type": "string", "format": "date-time"},
    },
    "required": ["source", "delivery_key", "seq", "employee_ref", "event", "outcome"],
}
_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source": {"type": "string"},
        "delivery_key": {"type": "string"},
        "replayed": {"type": "boolean"},
        "events": {"type": "array", "items": _RECORD},
    },
    "required": ["source", "delivery_key", "replayed", "events"],
}


def _webhook(op_id: str, summary: str, model: str, scheme: str, headers: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": op_id,
            "summary": summary,
            "description": f"Signed: `{headers}-Signature` is the hex HMAC-SHA256 of the raw "
            f"body followed by `{headers}-Timestamp` (Unix seconds or milliseconds, or ISO "
            "8601 with an offset; at most 5 minutes old). "
            "A redelivered body answers 200 with the stored outcome (`replayed: true`) and "
            "changes nothing. docs/hr-triggers.md.",
            "tags": ["hr"],
            "security": [{f"{scheme}Signature": [], f"{scheme}Timestamp": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}
                },
            },
            "responses": {
                "200": _json("Accepted (or a redelivery): what each employee event did", _RESULT),
                "400": _json("Malformed JSON or an invalid payload: nothing written", _ERROR),
                "401": _json("Missing, wrong or stale signature: nothing written", _ERROR),
                "404": _json("This HR webhook is not configured", _ERROR),
                "409": _json("The event_id was delivered before with another body", _ERROR),
                "413": _json("Body too large: nothing written", _ERROR),
                "415": _json("Not application/json: nothing written", _ERROR),
                "503": _json(
                    "The store cannot answer now (`temporarily_unavailable`: nothing written), "
                    "or some employee events could not be applied (`not_all_applied`: the "
                    "others were); retry: the retry applies only what is missing",
                    _ERROR,
                ),
            },
        }
    }


def _api_key(header: str) -> dict[str, Any]:
    return {"type": "apiKey", "in": "header", "name": header}


WEBHOOK_SECURITY_SCHEMES: dict[str, Any] = {
    "bamboohrSignature": _api_key("X-BambooHR-Signature"),
    "bamboohrTimestamp": _api_key("X-BambooHR-Timestamp"),
    "postureHrSignature": _api_key("X-Posture-Signature"),
    "postureHrTimestamp": _api_key("X-Posture-Timestamp"),
}

WEBHOOK_PATHS: dict[str, Any] = {
    "/hr/v1/webhooks/bamboohr": _webhook(
        "hrBambooHrWebhook",
        "BambooHR field-based webhook: offboard, schedule or cancel",
        "BambooPayload",
        "bamboohr",
        "X-BambooHR",
    ),
    "/hr/v1/webhooks/generic": _webhook(
        "hrGenericWebhook",
        "Generic HR event: employee.offboard | employee.offboard_cancelled",
        "GenericEvent",
        "postureHr",
        "X-Posture",
    ),
}

ADMIN_PATHS: dict[str, Any] = {
    "/admin/api/hr/deliveries": {
        "get": {
            "operationId": "adminHrDeliveries",
            "summary": "Recorded HR events, newest first (helpdesk role)",
            "tags": ["admin"],
            "security": [{"adminToken": []}],  # a named admin's token (helpdesk or admin)
            "parameters": [
                {
                    "name": "outcome",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(OUTCOMES)},
                },
                {
                    "name": "source",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["bamboohr", "generic"]},
                },
                {
                    "name": "user_id",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                },
            ],
            "responses": {
                "200": _json(
                    "The records",
                    {
                        "type": "object",
                        "properties": {"deliveries": {"type": "array", "items": _RECORD}},
                        "required": ["deliveries"],
                    },
                ),
                "400": _json("An invalid filter", _ERROR),
                "401": _json("No or wrong admin token", _ERROR),
                "403": _json("The caller's role may not", _ERROR),
                "503": _json("The store cannot answer now", _ERROR),
            },
        }
    }
}
