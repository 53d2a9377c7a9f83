"""JSON in and out of the device protocol: request bodies and ``{"error", "reason"}`` errors.

Shared by the device protocol blueprints: :func:`install_error_handlers` maps every
:class:`~mdm_core.domain.errors.MdmError` leaf and every HTTP error (413, 415, 405 ...) to the same
JSON shape, with ``WWW-Authenticate: DeviceProof`` on 401, and a store that is down
(SQLAlchemy or Redis errors) to ``503 store_unavailable`` with ``Retry-After``, never a 500.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from mdm_core.domain.errors import BadRequest, MdmError, RateLimited
from mdm_core.domain.infra_errors import InfraError
from mdm_core.support.json_input import loads_bounded

if TYPE_CHECKING:
    from mdm_core.runtime import MdmCore

log = logging.getLogger(__name__)

#: Seconds a device is told to wait when the store is down (503 ``store_unavailable``).
STORE_RETRY_AFTER_S = 30

__all__ = [
    "STORE_RETRY_AFTER_S",
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


def _store_down(err: Exception) -> Response:
    # The database or Redis is unreachable: an outage, not a server bug. The unit of work has
    # rolled back; the device retries after the hint.
    log.warning("device protocol: store unavailable: %s", type(err).__name__)
    resp = error_response("store_unavailable", "the server's store is unavailable; retry", 503)
    resp.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
    return resp


def install_error_handlers(bp: Blueprint) -> None:
    bp.register_error_handler(MdmError, _mdm_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(SQLAlchemyError, _store_down)
    bp.register_error_handler(InfraError, _store_down)


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; 415 unless JSON, 400 ``invalid_json`` unless
    acceptable JSON (:func:`~mdm_core.support.json_input.loads_bounded`), 400 unless an object."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    data = loads_bounded(body)
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data
