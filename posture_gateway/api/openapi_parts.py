"""Building blocks every OpenAPI path-item module shares (device protocol and admin API,
device administration, offboarding, HR webhooks): the JSON error schema, the admin token
security requirement, a JSON response and a JSON request body."""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR", "ADMIN_SECURITY", "json_response", "json_body"]

#: Every error answer: ``{"error": code, "reason": text}``.
ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
    "required": ["error", "reason"],
}
#: The admin API's security requirement (the ``adminToken`` bearer scheme).
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminToken": []}]


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}
