"""The admin API's guard: who is calling (a named admin, by their own token) and whether
their role allows the route.

- :func:`authenticate_admin` runs before every request of an admin blueprint
  (:func:`install_admin_guard`). ``Authorization: Bearer pga_<id>_<secret>`` is a per-admin
  token (:mod:`.tokens`): found by its id, the secret compared in constant time, a disabled
  admin refused (401). The old shared ``settings.admin_token`` is accepted ONLY on the
  read-only routes that existed before named admins (:data:`LEGACY_ENDPOINTS`: what-if,
  policies, sessions), with its old rules (none configured or shorter than 32 characters:
  403 ``admin_api_disabled``); every other route needs a named admin (401).
- :func:`require_role` wraps a view: a caller whose role is not enough gets 403
  ``forbidden`` and the refusal is audited (``admin.refused``, actor ``admin:<name>``);
  nothing else happens.
- :func:`current_admin` is the caller inside a request.
- Failed authentications are limited per source address (``admin_auth_failures_per_minute``,
  30): every 401 counts one failure; once over the limit a failed attempt is answered 429
  with ``Retry-After`` instead of 401 (audited once per window, ``ratelimit.refused``). The
  token is checked first, so a valid one always works (nobody at a shared address is locked
  out); a secret of 256 random bits cannot be guessed anyway: the limit caps what a flood of
  attempts costs and makes it visible. A limiter that fails means 503, never a 401 unlimited.

Every answer of a guarded blueprint carries ``Cache-Control: no-store``. Errors are JSON
``{"error": code, "reason": text}``; secrets are never logged.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from mdm_core.domain.errors import LimiterUnavailable, RateLimited
from mdm_core.domain.infra_errors import InfraError
from mdm_core.ratelimit.guard import RateGuard
from posture_gateway.admin.principals import AdminPrincipal, Role
from posture_gateway.admin.service import authenticate_token
from posture_gateway.admin.tokens import looks_named
from posture_gateway.state import state

__all__ = [
    "LEGACY_ENDPOINTS",
    "REQUIRED_ROLE",
    "MIN_TOKEN_LENGTH",
    "authenticate_admin",
    "install_admin_guard",
    "require_role",
    "current_admin",
    "admin_error",
    "audit_refusal",
]

_log = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])

MIN_TOKEN_LENGTH = 32
#: The read-only routes the shared ``settings.admin_token`` still opens (and only these).
LEGACY_ENDPOINTS = frozenset(
    {"admin_api.what_if_view", "admin_api.policies_view", "admin_api.sessions_view"}
)
_PRINCIPAL = "posture_admin_principal"
#: The attribute :func:`require_role` sets on the views it wraps: every admin route that is
#: not a legacy read-only one must carry it (a test walks the URL map), so a route added
#: without a role check is caught instead of opening to every named admin.
REQUIRED_ROLE = "posture_required_role"
_MINUTE = timedelta(minutes=1)


def admin_error(status: int, code: str, reason: str) -> tuple[Response, int]:
    response = jsonify({"error": code, "reason": reason})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="posture-admin"'
    response.headers["Cache-Control"] = "no-store"
    return response, status


def _bearer() -> str | None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        return None
    return presented


def _legacy(presented: str | None) -> tuple[Response, int] | None:
    """The shared admin token, exactly as before named admins (read-only routes only)."""
    configured = state().settings.admin_token
    secret = configured.get_secret_value() if configured is not None else ""
    if len(secret) < MIN_TOKEN_LENGTH:
        return admin_error(403, "admin_api_disabled", "no admin token (>= 32 characters) is set")
    if presented is None:
        return admin_error(401, "unauthorized", "a bearer admin token is required")
    if not hmac.compare_digest(presented.encode(), secret.encode()):
        return admin_error(401, "unauthorized", "the admin token is not valid")
    return None


def _audit(actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    """Record a refusal in its own unit of work (the refused request changes nothing else)."""
    try:
        with state().core.storage.unit_of_work() as uow:
            uow.audit.record(actor, action, target, "refused", detail, at=datetime.now(UTC))
    except Exception:  # the refusal stands even when the audit store is down
        _log.exception("could not audit a refused admin request")


def authenticate_admin() -> tuple[Response, int] | None:
    """``before_request`` of every admin blueprint: a named admin, or the legacy token on a
    legacy read-only route; anything else is refused before the view runs (and a refused
    authentication counts against its source address)."""
    refused = _authenticate()
    if refused is not None and refused[1] == 401:
        return _limit_guessing(refused)
    return refused


def _limit_guessing(refusal: tuple[Response, int]) -> tuple[Response, int]:
    """``refusal`` (a 401), counted against the caller's address: 429 once over the limit."""
    st = state()
    source = f"admin:src:{request.remote_addr or '-'}"
    limit = st.settings.admin_auth_failures_per_minute
    guard = RateGuard(st.core.rate_limiter, st.core.storage)
    try:
        guard.failed("admin_auth_source", source, limit, _MINUTE, actor="-", subject=source)
    except RateLimited as exc:
        response, status = admin_error(
            429, "rate_limited", "too many failed admin authentications from this address"
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status
    except LimiterUnavailable:
        return admin_error(503, "store_unavailable", "the rate limiter is unavailable; retry")
    return refusal


def _authenticate() -> tuple[Response, int] | None:
    presented = _bearer()
    if presented is not None and looks_named(presented):
        outcome = authenticate_token(state().core.storage, presented)
        if outcome.principal is None:
            if outcome.claimed is not None:  # a real admin's id: worth a line in the trail
                _audit(
                    f"admin:{outcome.claimed}",
                    "admin.authentication",
                    request.path[:128],
                    {"reason": outcome.refusal},
                )
            if outcome.refusal == "admin_disabled":
                return admin_error(401, "admin_disabled", "this admin is disabled")
            return admin_error(401, "unauthorized", "the admin token is not valid")
        setattr(g, _PRINCIPAL, outcome.principal)
        return None
    if request.endpoint in LEGACY_ENDPOINTS:
        return _legacy(presented)
    if presented is None:
        return admin_error(401, "unauthorized", "a bearer admin token is required")
    return admin_error(401, "unauthorized", "this route needs a named admin's token")


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _store_down(exc: Exception) -> tuple[Response, int]:
    """The database or Redis is unreachable (while authenticating or acting): 503, fail
    closed; the unit of work rolled back."""
    _log.warning("admin API: store unavailable: %s", type(exc).__name__)
    return admin_error(503, "store_unavailable", "the server's store is unavailable; retry")


def install_admin_guard(bp: Blueprint) -> None:
    """Run :func:`authenticate_admin` before every request of ``bp`` (no-store answers; a
    store outage is 503 ``store_unavailable``, never a 500 or a pass)."""
    bp.before_request(authenticate_admin)
    bp.after_request(_no_store)
    bp.register_error_handler(SQLAlchemyError, _store_down)
    bp.register_error_handler(InfraError, _store_down)


def current_admin() -> AdminPrincipal:
    """The named admin of this request. Raises :class:`LookupError` outside one (or for the
    legacy shared token, which names no admin)."""
    principal = g.get(_PRINCIPAL)
    if not isinstance(principal, AdminPrincipal):
        raise LookupError("no named admin authenticated this request")
    return principal


def _target() -> str:
    args = request.view_args or {}
    for key in ("device_id", "command_id", "request_id", "job_id", "user_id"):
        if key in args:
            return str(args[key])[:128]
    return request.path[:128]


def audit_refusal(principal: AdminPrincipal, action: str, target: str, reason: str) -> None:
    """Audit an admin action refused (role, ownership, second-admin rule, ...)."""
    _audit(principal.actor, action, target, {"reason": reason, "role": principal.role.value})


def require_role(role: Role) -> Callable[[_F], _F]:
    """Wrap a view: callers whose role does not include ``role`` get 403, audited."""

    def decorate(view: _F) -> _F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                principal = current_admin()
            except LookupError:
                return admin_error(401, "unauthorized", "this route needs a named admin's token")
            if not principal.may(role):
                audit_refusal(
                    principal,
                    f"admin.{request.endpoint or 'unknown'}",
                    _target(),
                    f"role {principal.role.value} may not; needs {role.value}",
                )
                return admin_error(
                    403, "forbidden", f"the {principal.role.value} role may not do this"
                )
            return view(*args, **kwargs)

        setattr(wrapper, REQUIRED_ROLE, role)  # the route-rule test reads it
        return cast(_F, wrapper)

    return decorate
