"""The transmitter's entries in ``/openapi.json`` (path items, hand-written)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI_PATHS", "OPENAPI_SECURITY_SCHEMES"]

_OBJECT: dict[str, Any] = {"type": "object"}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "required": ["error"],
}
_BEARER: list[dict[str, list[str]]] = [{"ssfBearer": []}]
_TEXT = {
    200: "The answer",
    201: "Created: the stream configuration",
    204: "Done",
    400: "Malformed or invalid request: nothing changed",
    401: "No, malformed or refused access token",
    403: "Token lacks the scope, or the client is not a receiver",
    404: "No such stream (or another receiver's)",
    409: "Limit reached, or the stream is disabled",
    413: "Body too large",
    503: "The token store cannot answer now: nothing changed, try again",
}

OPENAPI_SECURITY_SCHEMES: dict[str, Any] = {
    "ssfBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token of our OP (client credentials) with ssf.manage / ssf.read",
    }
}


def _op(
    op_id: str,
    summary: str,
    ok: int,
    *errors: int,
    body: bool = False,
    answer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code in (ok, *errors, 503):  # every bearer-checked operation may answer 503
        entry: dict[str, Any] = {"description": _TEXT[code]}
        if code == 200 and answer is None and op_id in _EMPTY_200:
            pass  # an empty 200 (SSF 8.1.3.2)
        elif code != 204:
            schema = (answer or _OBJECT) if code < 400 else _ERROR
            entry["content"] = {"application/json": {"schema": schema}}
        responses[str(code)] = entry
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": ["shared-signals"],
        "security": _BEARER,
        "responses": responses,
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _OBJECT}},
        }
    return op


_EMPTY_200 = {"ssfAddSubject"}
_ONE_OR_ALL: dict[str, Any] = {"oneOf": [_OBJECT, {"type": "array", "items": _OBJECT}]}

_STREAM_ID = [{"name": "stream_id", "in": "query", "required": False, "schema": {"type": "string"}}]

OPENAPI_PATHS: dict[str, Any] = {
    "/.well-known/ssf-configuration": {
        "get": {
            "operationId": "ssfConfiguration",
            "summary": "Transmitter configuration metadata (SSF 1.0 §7)",
            "tags": ["shared-signals"],
            "responses": {
                "200": {
                    "description": "The metadata",
                    "content": {"application/json": {"schema": _OBJECT}},
                }
            },
        }
    },
    "/ssf/streams": {
        "post": _op(
            "ssfCreateStream",
            "Create a stream (SSF 1.0 §8.1.1.1)",
            201,
            400,
            401,
            403,
            409,
            413,
            body=True,
        ),
        "get": {
            **_op(
                "ssfReadStream",
                "Read one or all own streams (§8.1.1.2)",
                200,
                400,
                401,
                403,
                404,
                answer=_ONE_OR_ALL,
            ),
            "parameters": _STREAM_ID,
        },
        "patch": _op(
            "ssfUpdateStream", "Update a stream (§8.1.1.3)", 200, 400, 401, 403, 404, 413, body=True
        ),
        "put": _op(
            "ssfReplaceStream",
            "Replace a stream (§8.1.1.4)",
            200,
            400,
            401,
            403,
            404,
            413,
            body=True,
        ),
        "delete": {
            **_op("ssfDeleteStream", "Delete a stream (§8.1.1.5)", 204, 400, 401, 403, 404),
            "parameters": _STREAM_ID,
        },
    },
    "/ssf/status": {
        "get": {
            **_op("ssfReadStatus", "Read a stream's status (§8.1.2.1)", 200, 400, 401, 403, 404),
            "parameters": _STREAM_ID,
        },
        "post": _op(
            "ssfUpdateStatus",
            "Enable, pause or disable a stream (§8.1.2.2)",
            200,
            400,
            401,
            403,
            404,
            body=True,
        ),
    },
    "/ssf/subjects/add": {
        "post": _op(
            "ssfAddSubject", "Add a subject (§8.1.3.2)", 200, 400, 401, 403, 404, 409, body=True
        )
    },
    "/ssf/subjects/remove": {
        "post": _op(
            "ssfRemoveSubject",
            "Remove a subject (§8.1.3.3)",
            204,
            400,
            401,
            403,
            404,
            409,
            body=True,
        )
    },
    "/ssf/verify": {
        "post": _op(
            "ssfVerify",
            "Ask for a verification event (§8.1.4.2)",
            204,
            400,
            401,
            403,
            404,
            409,
            body=True,
        )
    },
    "/ssf/poll/{stream_id}": {
        "post": {
            **_op(
                "ssfPoll",
                "Poll for SETs, acknowledge (RFC 8936 §2.4)",
                200,
                400,
                401,
                403,
                404,
                413,
                body=True,
            ),
            "parameters": [
                {"name": "stream_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
        }
    },
}
