"""Building blocks every OpenAPI path-item module shares (device protocol and admin API,
device administration, offboarding, HR webhooks): the JSON error schema, the admin token
security requirement, a JSON response and a JSON request body."""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR", "ADMIN_SECURITY", "json_response", "json_body", "with_admin_auth_limit"]

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


#: What every admin operation may answer once its caller's address failed too often.
_AUTH_LIMITED: dict[str, Any] = {
    "description": "Too many failed admin authentications from this address: retry after "
    "Retry-After seconds (a valid token is never refused by this limit)",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/json": {"schema": ERROR}},
}


def with_admin_auth_limit(paths: dict[str, Any]) -> dict[str, Any]:
    """``paths`` with a 429 answer on every operation secured by the admin token (the guard
    limits failed authentications per address on all of them)."""
    out: dict[str, Any] = {}
    for path, item in paths.items():
        new_item = dict(item)
        for method, op in item.items():
            if isinstance(op, dict) and op.get("security") == ADMIN_SECURITY:
                responses = {**op.get("responses", {})}
                responses.setdefault("429", _AUTH_LIMITED)
                new_item[method] = {**op, "responses": responses}
        out[path] = new_item
    return out
