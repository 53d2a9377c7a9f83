"""The transmitter's HTTP endpoints (blueprint ``signals``).

- ``GET /.well-known/ssf-configuration`` — transmitter configuration metadata (SSF 1.0 §7.1);
- ``/ssf/streams`` — stream configuration: POST create, GET read (one with ``stream_id``, or
  all of the caller's), PATCH update, PUT replace, DELETE (§8.1.1);
- ``/ssf/status`` — GET / POST status (§8.1.2); ``/ssf/subjects/add`` and ``/remove`` (§8.1.3);
  ``/ssf/verify`` (§8.1.4);
- ``POST /ssf/poll/<stream_id>`` — poll delivery (RFC 8936).

Every endpoint but the metadata needs a bearer token (:mod:`.auth`): ``ssf.read`` for GET and
poll, ``ssf.manage`` for anything that changes a stream. Bodies are JSON objects of at most
:data:`MAX_BODY` bytes; errors are ``{"error", "error_description"}`` with the status of
SSF 1.0 §8.1 (400, 401, 403, 404, 409).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from posture_gateway.signals.auth import AuthFailure, Receiver, authenticate
from posture_gateway.signals.openapi import OPENAPI_PATHS, OPENAPI_SECURITY_SCHEMES
from posture_gateway.signals.settings import SCOPE_MANAGE, SCOPE_READ
from posture_gateway.signals.state import SignalsState
from posture_gateway.signals.streams import ApiError
from posture_gateway.signals.vocabulary import DELIVERY_METHODS, SPEC_VERSION

__all__ = ["bp", "OPENAPI_PATHS", "OPENAPI_SECURITY_SCHEMES", "MAX_BODY"]

log = logging.getLogger(__name__)

bp = Blueprint("signals", __name__)

MAX_BODY = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def _state() -> SignalsState:
    st = current_app.extensions["posture_signals"]
    assert isinstance(st, SignalsState)
    return st


def _error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers.update(_NO_STORE)
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    elif status == 403 and error == "insufficient_scope":
        response.headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
    return response


@bp.errorhandler(AuthFailure)
def _auth_failure(exc: AuthFailure) -> ResponseReturnValue:
    log.warning("ssf request refused: %s %s", exc.error, exc.description)
    return _error(exc.status, exc.error, exc.description)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> ResponseReturnValue:
    return _error(exc.status, exc.error, exc.description)


def _caller(scope: str) -> Receiver:
    st = _state()
    return authenticate(request.headers.get("Authorization"), st.verifier, st.settings, scope)


def _body() -> Any:
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "invalid_request", f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        return None
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json":
        raise ApiError(400, "invalid_request", "the body must be application/json")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_request", "the body is not valid JSON") from exc


def _json(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(_NO_STORE)
    return response


def _empty(status: int) -> Response:
    response = Response(status=status)
    response.headers.update(_NO_STORE)
    return response


@bp.get("/.well-known/ssf-configuration")
def configuration() -> ResponseReturnValue:
    st = _state()
    base = st.public_url
    return jsonify(
        {
            "spec_version": SPEC_VERSION,
            "issuer": st.issuer,
            "jwks_uri": f"{st.issuer}/jwks.json",
            "delivery_methods_supported": list(DELIVERY_METHODS),
            "configuration_endpoint": f"{base}/ssf/streams",
            "status_endpoint": f"{base}/ssf/status",
            "add_subject_endpoint": f"{base}/ssf/subjects/add",
            "remove_subject_endpoint": f"{base}/ssf/subjects/remove",
            "verification_endpoint": f"{base}/ssf/verify",
            "critical_subject_members": ["user"],
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
            "default_subjects": st.settings.default_subjects,
        }
    )


@bp.post("/ssf/streams")
def create_stream() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    return _json(_state().streams.create(receiver, _body()), 201)


@bp.get("/ssf/streams")
def read_stream() -> ResponseReturnValue:
    receiver = _caller(SCOPE_READ)
    return _json(_state().streams.read(receiver, request.args.get("stream_id")))


@bp.patch("/ssf/streams")
def update_stream() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    return _json(_state().streams.update(receiver, _body(), replace=False))


@bp.put("/ssf/streams")
def replace_stream() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    return _json(_state().streams.update(receiver, _body(), replace=True))


@bp.delete("/ssf/streams")
def delete_stream() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    _state().streams.delete(receiver, request.args.get("stream_id"))
    return _empty(204)


@bp.get("/ssf/status")
def read_status() -> ResponseReturnValue:
    receiver = _caller(SCOPE_READ)
    return _json(_state().streams.status(receiver, request.args.get("stream_id")))


@bp.post("/ssf/status")
def update_status() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    return _json(_state().streams.set_status(receiver, _body()))


@bp.post("/ssf/subjects/add")
def add_subject() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    _state().streams.change_subject(receiver, _body(), add=True)
    return _json({}, 200)


@bp.post("/ssf/subjects/remove")
def remove_subject() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    _state().streams.change_subject(receiver, _body(), add=False)
    return _empty(204)


@bp.post("/ssf/verify")
def verify() -> ResponseReturnValue:
    receiver = _caller(SCOPE_MANAGE)
    _state().streams.verify(receiver, _body())
    return _empty(204)


@bp.post("/ssf/poll/<stream_id>")
def poll(stream_id: str) -> ResponseReturnValue:
    receiver = _caller(SCOPE_READ)
    if len(stream_id) > 64:
        raise ApiError(404, "not_found", "no such stream")
    return _json(_state().poll.poll(receiver, stream_id, _body()))
