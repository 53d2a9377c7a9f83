"""The OpenAPI 3.1 description of ``/scim/v2`` (collected by the gateway's ``/openapi.json``).

Hand-written path items: SCIM payloads are described by the SCIM schemas themselves (served at
``/scim/v2/Schemas``), so request bodies are open JSON objects here and answers are
``application/scim+json``. Resource operations need the ``scimBearer`` scheme; discovery is
public.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI_PATHS", "OPENAPI_SECURITY_SCHEMES"]

_SCIM = "application/scim+json"
_OBJECT: dict[str, Any] = {"type": "object"}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "schemas": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string"},
        "scimType": {"type": "string"},
        "detail": {"type": "string"},
    },
    "required": ["schemas", "status"],
}
_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "schemas": {"type": "array", "items": {"type": "string"}},
        "totalResults": {"type": "integer"},
        "startIndex": {"type": "integer"},
        "itemsPerPage": {"type": "integer"},
        "Resources": {"type": "array", "items": _OBJECT},
    },
    "required": ["schemas", "totalResults", "Resources"],
}
_BEARER: list[dict[str, list[str]]] = [{"scimBearer": []}]

OPENAPI_SECURITY_SCHEMES: dict[str, Any] = {
    "scimBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The bearer token of a configured SCIM client (scim.clients)",
    }
}

_TEXT = {
    200: "The resource or answer",
    201: "Created (Location and ETag headers)",
    204: "Deleted",
    304: "Not modified (If-None-Match names the current version)",
    400: "Bad request: invalidFilter, invalidSyntax, invalidPath, noTarget, invalidValue, "
    "mutability, tooMany",
    401: "No or wrong bearer token",
    404: "Unknown resource (or another client's)",
    409: "uniqueness: the userName or displayName is taken",
    412: "If-Match does not name the current version: nothing changed",
    413: "Body too large",
    429: "Too many requests (Retry-After)",
    503: "The rate limiter is unavailable (fail closed)",
}


def _responses(ok: int, body: dict[str, Any] | None, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body is None:
        out[str(ok)] = {"description": _TEXT[ok]}
    else:
        out[str(ok)] = {"description": _TEXT[ok], "content": {_SCIM: {"schema": body}}}
    for code in errors:
        out[str(code)] = {"description": _TEXT[code], "content": {_SCIM: {"schema": _ERROR}}}
    return out


_AUTH_ERRORS = (401, 429, 503)
_QUERY = [
    {"name": "filter", "in": "query", "schema": {"type": "string"}},
    {"name": "sortBy", "in": "query", "schema": {"type": "string"}},
    {"name": "sortOrder", "in": "query", "schema": {"enum": ["ascending", "descending"]}},
    {"name": "startIndex", "in": "query", "schema": {"type": "integer"}},
    {"name": "count", "in": "query", "schema": {"type": "integer"}},
    {"name": "attributes", "in": "query", "schema": {"type": "string"}},
    {"name": "excludedAttributes", "in": "query", "schema": {"type": "string"}},
]
_PROJECTION = _QUERY[-2:]
_BODY = {"required": True, "content": {"application/json": {"schema": _OBJECT}}}
_ID = {"name": "resource_id", "in": "path", "required": True, "schema": {"type": "string"}}
_IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"}}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": ["scim"],
        "security": extra.pop("security", _BEARER),
        "responses": responses,
        **extra,
    }


def _resource_paths(name: str, plural: str) -> dict[str, Any]:
    base = f"/scim/v2/{plural}"
    return {
        base: {
            "get": _op(
                f"scimList{plural}",
                f"List or filter {plural} (RFC 7644 §3.4.2)",
                _responses(200, _LIST, 400, *_AUTH_ERRORS),
                parameters=_QUERY,
            ),
            "post": _op(
                f"scimCreate{name}",
                f"Create a {name} (RFC 7644 §3.3)",
                _responses(201, _OBJECT, 400, 409, 413, *_AUTH_ERRORS),
                parameters=_PROJECTION,
                requestBody=_BODY,
            ),
        },
        f"{base}/.search": {
            "post": _op(
                f"scimSearch{plural}",
                f"Search {plural} with a SearchRequest (RFC 7644 §3.4.3)",
                _responses(200, _LIST, 400, 413, *_AUTH_ERRORS),
                requestBody=_BODY,
            )
        },
        f"{base}/{{resource_id}}": {
            "get": _op(
                f"scimGet{name}",
                f"Read a {name}",
                {
                    **_responses(200, _OBJECT, 400, 404, *_AUTH_ERRORS),
                    "304": {"description": _TEXT[304]},
                },
                parameters=[_ID, _IF_NONE_MATCH, *_PROJECTION],
            ),
            "put": _op(
                f"scimReplace{name}",
                f"Replace a {name} (RFC 7644 §3.5.1)",
                _responses(200, _OBJECT, 400, 404, 409, 412, 413, *_AUTH_ERRORS),
                parameters=[_ID, _IF_MATCH, *_PROJECTION],
                requestBody=_BODY,
            ),
            "patch": _op(
                f"scimPatch{name}",
                f"Modify a {name} with a PatchOp (RFC 7644 §3.5.2)",
                _responses(200, _OBJECT, 400, 404, 409, 412, 413, *_AUTH_ERRORS),
                parameters=[_ID, _IF_MATCH, *_PROJECTION],
                requestBody=_BODY,
            ),
            "delete": _op(
                f"scimDelete{name}",
                f"Delete a {name}",
                _responses(204, None, 404, 412, *_AUTH_ERRORS),
                parameters=[_ID, _IF_MATCH],
            ),
        },
    }


_PUBLIC: list[dict[str, list[str]]] = []

OPENAPI_PATHS: dict[str, Any] = {
    "/scim/v2/ServiceProviderConfig": {
        "get": _op(
            "scimServiceProviderConfig",
            "What this SCIM server supports (RFC 7644 §4)",
            _responses(200, _OBJECT),
            security=_PUBLIC,
        )
    },
    "/scim/v2/ResourceTypes": {
        "get": _op("scimResourceTypes", "User and Group", _responses(200, _LIST), security=_PUBLIC)
    },
    "/scim/v2/ResourceTypes/{name}": {
        "get": _op(
            "scimResourceType",
            "One resource type",
            _responses(200, _OBJECT, 404),
            security=_PUBLIC,
            parameters=[
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["User", "Group"]},
                }
            ],
        )
    },
    "/scim/v2/Schemas": {
        "get": _op(
            "scimSchemas",
            "The schemas served (RFC 7643 §7)",
            _responses(200, _LIST),
            security=_PUBLIC,
        )
    },
    "/scim/v2/Schemas/{urn}": {
        "get": _op(
            "scimSchema",
            "One schema",
            _responses(200, _OBJECT, 404),
            security=_PUBLIC,
            parameters=[
                {
                    "name": "urn",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^urn:[A-Za-z0-9:._-]{1,200}$"},
                }
            ],
        )
    },
    "/scim/v2/.search": {
        "post": _op(
            "scimSearchAll",
            "Search Users and Groups at once (RFC 7644 §3.4.3)",
            _responses(200, _LIST, 400, 413, *_AUTH_ERRORS),
            requestBody=_BODY,
        )
    },
    **_resource_paths("User", "Users"),
    **_resource_paths("Group", "Groups"),
}
