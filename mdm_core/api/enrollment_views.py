"""HTTP endpoints of the device protocol for enrollment, renewal and the CA certificate
(blueprint ``bp``, under ``/mdm/v1``).

- ``POST /mdm/v1/enroll`` (no proof: the token, or the registered serial with its enrollment
  secret, is the credential)::

      {"csr": "<PEM>", "platform": "macos", "ownership": "corporate|byod",
       "token": "...", "serial_number": "...",          # at least one of the two
       "enrollment_secret": "...",                      # required with a serial alone
       "privacy_notice_accepted": "<profile id>",       # required for byod
       "device_id": "..."}                              # optional: re-enroll this device

  Rate limited on the core's shared limiter (every process counts together): refused
  enrollments (any 4xx) are counted per client address and per target (the serial, or the
  token's hash), and a source or target over its limit is refused before any work: ``429``
  with ``Retry-After``, counted and audited, nothing changed. Successful enrollments are not
  counted, so a fleet enrolling from one address is not slowed; guessing is.

  -> ``201 {"device_id", "certificate", "ca_certificate", "checkin_url", "status",
  "re_enrolled"}``
- ``POST /mdm/v1/renew`` with a request proof (``Device-Proof`` header) over
  ``{"csr": "<PEM>"}`` -> ``200`` same shape; the certificate the device used is revoked.
- ``GET /mdm/v1/ca`` -> the CA certificate (PEM), for devices and mTLS proxies.

Errors: ``{"error": "<reason>", "reason": "<text>"}``: 400 malformed JSON / missing or
mistyped or unknown field / bad CSR / notice not accepted, 401 bad token or refused proof,
403 ownership/platform/device mismatch, unregistered serial or missing/wrong enrollment secret,
413 too large, 415 not JSON, 429 rate limited, 503 rate limiter unavailable. A refused request
changes nothing (the token stays unspent).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from mdm_core.api.errors import (
    current_core,
    install_error_handlers,
    json_object,
)
from mdm_core.device.enrollment import EnrollmentRequest
from mdm_core.device.proof import PROOF_HEADER
from mdm_core.domain.errors import BadRequest, MalformedProof, MdmError
from mdm_core.posture.model import Ownership, Platform
from mdm_core.ratelimit.guard import RateGuard

if TYPE_CHECKING:
    pass

__all__ = ["bp", "MAX_ENROLL_BYTES"]

bp = Blueprint("mdm_enrollment", __name__, url_prefix="/mdm/v1")
install_error_handlers(bp)

#: A CSR is < 1 KiB; anything near this is not an enrollment.
MAX_ENROLL_BYTES = 32 * 1024
_ENROLL_FIELDS = {
    "csr",
    "platform",
    "ownership",
    "token",
    "serial_number",
    "privacy_notice_accepted",
    "device_id",
    "enrollment_secret",
}


_E = TypeVar("_E", Platform, Ownership)


class PayloadTooLarge(MdmError):
    reason = "payload_too_large"
    status = 413


def _body() -> bytes:
    if (request.content_length or 0) > MAX_ENROLL_BYTES:
        raise PayloadTooLarge(f"the body must be at most {MAX_ENROLL_BYTES} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_ENROLL_BYTES:
        raise PayloadTooLarge(f"the body must be at most {MAX_ENROLL_BYTES} bytes")
    return body


def _str(data: dict[str, Any], name: str) -> str | None:
    """An optional non-empty string field (``None`` when absent or null)."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def _required(data: dict[str, Any], name: str) -> str:
    value = _str(data, name)
    if value is None:
        raise BadRequest(f"{name} is required")
    return value


def _choice(data: dict[str, Any], name: str, enum: type[_E]) -> _E:
    value = _required(data, name)
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(f"{name} must be one of: {allowed}") from None


def _proof() -> str:
    token = request.headers.get(PROOF_HEADER)
    if token is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "deviceproof":
            token = value.strip()
    if not token:
        raise MalformedProof(f"missing device proof ({PROOF_HEADER} header)")
    return token


def _target_key(token: str | None, serial: str | None) -> str | None:
    """The per-target limit key: the token's hash (never the token) or the serial."""
    if token is not None:
        return "enroll:token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]
    if serial is not None:
        return "enroll:serial:" + serial[:128]
    return None


@bp.post("/enroll")
def enroll() -> ResponseReturnValue:
    core = current_core()
    cfg = core.config
    guard = RateGuard(core.rate_limiter, core.storage)
    source = request.remote_addr or "unknown"
    actor = f"source:{source}"
    limits = [
        (
            "enroll_source",
            f"enroll:src:{source}",
            cfg.enroll_limit_per_source,
            cfg.enroll_source_window,
            source,
        )
    ]
    guard.check(*limits[0][:4], actor=actor, subject=source)
    try:
        data = json_object(_body())
        unknown = sorted(set(data) - _ENROLL_FIELDS)
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
        token, serial = _str(data, "token"), _str(data, "serial_number")
        target = _target_key(token, serial)
        if target is not None:
            subject = serial if token is None and serial is not None else "token"
            limits.append(
                (
                    "enroll_target",
                    target,
                    cfg.enroll_limit_per_target,
                    cfg.enroll_target_window,
                    subject,
                )
            )
            guard.check(*limits[1][:4], actor=actor, subject=subject)
        enrollment = EnrollmentRequest(
            csr_pem=_required(data, "csr"),
            platform=_choice(data, "platform", Platform),
            ownership=_choice(data, "ownership", Ownership),
            token=token,
            serial_number=serial,
            privacy_notice_accepted=_str(data, "privacy_notice_accepted"),
            device_id=_str(data, "device_id"),
            enrollment_secret=_str(data, "enrollment_secret"),
            source=source,
        )
        result = core.enrollment.enroll(enrollment)
    except MdmError as refused:
        if 400 <= refused.status < 500 and refused.status != 429:
            for name, key, limit, window, _ in limits:
                guard.count_failure(name, key, limit, window)
        raise
    return jsonify(result.to_json()), 201


@bp.post("/renew")
def renew() -> ResponseReturnValue:
    core = current_core()
    body = _body()
    url = core.config.public_url.rstrip("/") + request.path
    with core.storage.unit_of_work() as uow:
        device = core.proofs.verify(_proof(), method=request.method, url=url, body=body, uow=uow)
        data = json_object(body)
        if set(data) != {"csr"}:
            raise BadRequest('the body must be exactly {"csr": "<PEM>"}')
        result = core.enrollment.renew(device, _required(data, "csr"), uow=uow)
    return jsonify(result.to_json())


@bp.get("/ca")
def ca_certificate() -> ResponseReturnValue:
    return Response(current_core().ca.certificate_pem, mimetype="application/x-pem-file")
