"""JSON in and out of the device protocol: request bodies and ``{"error", "reason"}`` errors.

Shared by the device protocol blueprints: :func:`install_error_handlers` maps every
:class:`~mdm_core.errors.MdmError` leaf and every HTTP error (413, 415, 405 ...) to the same
JSON shape, with ``WWW-Authenticate: DeviceProof`` on 401.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from mdm_core.errors import BadRequest, MdmError, RateLimited

if TYPE_CHECKING:
    from mdm_core.runtime import MdmCore

__all__ = [
    "UnsupportedMediaType",
    "current_core",
    "error_response",
    "install_error_handlers",
    "json_object",
]


class UnsupportedMediaType(MdmError):
    reason = "unsupported_media_type"
    status = 415


def current_core() -> MdmCore:
    """The MDM core of this app (the gateway keeps it at ``extensions["posture"].core``)."""
    return current_app.extensions["posture"].core  # type: ignore[no-any-return]


def error_response(code: str, reason: str, status: int) -> Response:
    resp = jsonify(error=code, reason=reason)
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = f'DeviceProof error="{code}"'
    return resp


def _mdm_error(err: MdmError) -> Response:
    resp = error_response(err.reason, err.message, err.status)
    if isinstance(err, RateLimited):
        resp.headers["Retry-After"] = str(err.retry_after)
    return resp


def _http_error(err: HTTPException) -> Response:
    code = (err.name or "error").lower().replace(" ", "_")
    return error_response(code, err.description or code, err.code or 500)


def install_error_handlers(bp: Blueprint) -> None:
    bp.register_error_handler(MdmError, _mdm_error)
    bp.register_error_handler(HTTPException, _http_error)


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; 415 unless JSON, 400 unless an object."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data
