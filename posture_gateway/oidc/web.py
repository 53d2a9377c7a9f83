"""Page plumbing for the login flow: CSRF tokens, the CSP header, no-store rendering.

Every page is rendered through :func:`render_page`, which sets a strict Content Security
Policy (scripts and styles only with this response's nonce; ``connect-src`` only the loopback
agent; ``form-action`` only ourselves and, when a form ends in a redirect to the relying
party, that party's origin), ``Cache-Control: no-store``, and anti-framing headers.
:func:`baseline_headers` (an ``after_request`` hook of the app) gives every other response of
the app — JSON APIs, Entra pages, error pages — ``nosniff``, ``X-Frame-Options: DENY`` and
``Referrer-Policy``, and any HTML page without its own CSP a deny-all one.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, make_response, render_template, request, session

__all__ = [
    "BASELINE_HEADERS",
    "baseline_headers",
    "csrf_token",
    "csrf_ok",
    "render_page",
    "origin_of",
    "security_headers",
]

_CSRF_KEY = "oidc_csrf"


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def csrf_ok() -> bool:
    """True when the submitted form carries this session's CSRF token (constant time)."""
    expected = session.get(_CSRF_KEY)
    submitted = request.form.get("csrf_token", "")
    return (
        isinstance(expected, str)
        and bool(expected)
        and hmac.compare_digest(submitted.encode(), expected.encode())
    )


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(
    response: Response,
    nonce: str | None = None,
    *,
    connect: Iterable[str] = (),
    form_targets: Iterable[str] = (),
) -> Response:
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {script}",
            f"style-src {script}",
            "img-src 'self'",
            "connect-src " + (" ".join(connect) or "'none'"),
            "form-action " + " ".join(["'self'", *form_targets]),
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


#: Headers every response of the app carries (set by :func:`baseline_headers`, an
#: ``after_request`` hook of the app factory) unless the view chose its own value.
BASELINE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: A page that set no CSP of its own may not run scripts, load anything, or be framed.
_DEFAULT_PAGE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


_BASELINE_LOWER = tuple((name.lower(), name, value) for name, value in BASELINE_HEADERS.items())


def baseline_headers(response: Response) -> Response:
    """The one set of security headers for every page and response (JSON, HTML, errors).

    One pass over the response's headers (names compared without case, as ``setdefault``
    does), then the missing ones added: the same result as a ``setdefault`` per header, at a
    quarter of the cost on every response."""
    headers = response.headers
    present = {name.lower() for name, _ in headers}
    for lower, name, value in _BASELINE_LOWER:
        if lower not in present:
            headers.add(name, value)
    if "content-security-policy" not in present and response.mimetype == "text/html":
        headers.add("Content-Security-Policy", _DEFAULT_PAGE_CSP)
    return response


def render_page(
    template: str,
    status: int = 200,
    *,
    connect: Iterable[str] = (),
    form_targets: Iterable[str] = (),
    **context: Any,
) -> Response:
    """Render ``template`` with a fresh CSP nonce and the CSRF token in its context."""
    nonce = secrets.token_urlsafe(16)
    body = render_template(template, csp_nonce=nonce, csrf_token=csrf_token(), **context)
    response = make_response(body, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return security_headers(response, nonce, connect=connect, form_targets=form_targets)
