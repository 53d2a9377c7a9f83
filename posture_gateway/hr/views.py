"""``POST /hr/v1/webhooks/bamboohr`` and ``POST /hr/v1/webhooks/generic``.

Each request is checked in this order, and the first failure answers with nothing written:
the source is configured (404), the body is ``application/json`` (415) and within
``hr.max_body_bytes`` (413), the signature and timestamp headers verify (401), the body
parses strictly (400). Only then does :class:`~posture_gateway.hr.service.HrTriggerService`
record and act on it (200, with the outcome of every employee event; a redelivery gets the
stored outcome with ``"replayed": true``). A store outage is 503 so that the sender retries;
so is a delivery of which some employee events could not be applied (``not_all_applied``:
the others were, and the retry applies only what is missing).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from mdm_core.domain.errors import MdmError
from mdm_core.domain.infra_errors import InfraError
from posture_gateway.hr.errors import HrError, NotAllApplied
from posture_gateway.hr.events import from_bamboohr, from_generic
from posture_gateway.hr.metrics import REFUSED
from posture_gateway.hr.openapi import WEBHOOK_MODELS, WEBHOOK_PATHS, WEBHOOK_SECURITY_SCHEMES
from posture_gateway.hr.payloads import parse_bamboohr, parse_generic
from posture_gateway.hr.signature import verify
from posture_gateway.hr.state import HrState, hr_state

__all__ = [
    "bp",
    "BAMBOOHR_PATH",
    "GENERIC_PATH",
    "BAMBOOHR_SIGNATURE",
    "BAMBOOHR_TIMESTAMP",
    "POSTURE_SIGNATURE",
    "POSTURE_TIMESTAMP",
]

log = logging.getLogger(__name__)

bp = Blueprint("hr_webhooks", __name__)

BAMBOOHR_PATH = "/hr/v1/webhooks/bamboohr"
GENERIC_PATH = "/hr/v1/webhooks/generic"
BAMBOOHR_SIGNATURE = "X-BambooHR-Signature"
BAMBOOHR_TIMESTAMP = "X-BambooHR-Timestamp"
POSTURE_SIGNATURE = "X-Posture-Signature"
POSTURE_TIMESTAMP = "X-Posture-Timestamp"
_NO_STORE = {"Cache-Control": "no-store"}


def _error(status: int, code: str, reason: str) -> Response:
    response = jsonify({"error": code, "reason": reason})
    response.status_code = status
    response.headers.update(_NO_STORE)
    return response


def _source() -> str:
    return "bamboohr" if request.path == BAMBOOHR_PATH else "generic"


@bp.errorhandler(HrError)
def _refused(exc: HrError) -> ResponseReturnValue:
    source = _source()
    REFUSED.labels(source=source, reason=exc.code).inc()
    log.warning("hr webhook refused: source=%s reason=%s", source, exc.code)
    return _error(exc.status, exc.code, exc.reason)


@bp.errorhandler(NotAllApplied)
def _partly_applied(exc: NotAllApplied) -> ResponseReturnValue:
    """Not a refusal: the failed events are counted as ``FAILED`` by the service."""
    log.warning("hr webhook partly applied: source=%s (%s)", _source(), exc.reason)
    return _error(exc.status, exc.code, exc.reason)


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(InfraError)
def _store_down(_: Exception) -> ResponseReturnValue:
    log.exception("hr webhook: store unavailable")
    return _error(503, "temporarily_unavailable", "the store is unavailable; retry later")


@bp.errorhandler(MdmError)
def _core_refused(exc: MdmError) -> ResponseReturnValue:
    return _error(exc.status if 400 <= exc.status < 500 else 503, exc.reason, str(exc))


def _verified_body(st: HrState, key: bytes | None, signature: str, timestamp: str) -> bytes:
    if key is None:
        raise HrError(404, "not_configured", "this HR webhook is not configured")
    if request.mimetype != "application/json":
        raise HrError(415, "unsupported_media_type", "the body must be application/json")
    limit = st.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise HrError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise HrError(413, "payload_too_large", f"the body is larger than {limit} bytes") from None
    if len(body) > limit:
        raise HrError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    verify(
        key,
        body,
        signature=request.headers.get(signature),
        timestamp=request.headers.get(timestamp),
        now=datetime.now(UTC),
        max_age=st.settings.max_age,
        future_leeway=st.settings.future_leeway,
    )
    return body


@bp.post(BAMBOOHR_PATH)
def bamboohr() -> ResponseReturnValue:
    st = hr_state()
    body = _verified_body(st, st.bamboohr_key, BAMBOOHR_SIGNATURE, BAMBOOHR_TIMESTAMP)
    payload = parse_bamboohr(body)
    assert st.settings.bamboohr is not None
    events = [from_bamboohr(e, st.settings.bamboohr) for e in payload.employees]
    digest = hashlib.sha256(body).hexdigest()
    result = st.service.accept("bamboohr", delivery_key=digest, body_sha256=digest, events=events)
    response = jsonify(result.to_json())
    response.headers.update(_NO_STORE)
    return response


@bp.post(GENERIC_PATH)
def generic() -> ResponseReturnValue:
    st = hr_state()
    body = _verified_body(st, st.generic_key, POSTURE_SIGNATURE, POSTURE_TIMESTAMP)
    event = parse_generic(body)
    result = st.service.accept(
        "generic",
        delivery_key=event.event_id,
        body_sha256=hashlib.sha256(body).hexdigest(),
        events=[from_generic(event)],
    )
    response = jsonify(result.to_json())
    response.headers.update(_NO_STORE)
    return response


# The OpenAPI document reads these from the blueprint's module (posture_gateway/api/openapi.py).
OPENAPI_PATHS = WEBHOOK_PATHS
OPENAPI_MODELS = WEBHOOK_MODELS
OPENAPI_SECURITY_SCHEMES = WEBHOOK_SECURITY_SCHEMES
