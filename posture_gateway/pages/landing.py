"""The public pages a person lands on: what this service is, privacy, sign-in and enrollment
help (blueprint ``bp``).

- ``GET /``: what the service is, with links to the help and privacy pages.
- ``GET /privacy?ownership=byod|corporate``: the transparency notice (:mod:`.notice`), BYOD
  by default; anything else is a 400 page.
- ``GET /help/sign-in``: what the device check does and what to do when it fails.
- ``GET /enroll``: how to enroll a device (the agent's command), linked from the device
  check; the BYOD notice comes first.

Every page gets the login pages' headers (:func:`~posture_gateway.oidc.web.security_headers`:
CSP with a per-response nonce, no-store, no framing) and sets no cookie. ``helpdesk`` (from
``settings.helpdesk``) is in the context of every template of the app, the login pages too.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Response, make_response, render_template, request
from flask.typing import ResponseReturnValue

from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.posture.model import Ownership
from posture_gateway.api.openapi import not_json
from posture_gateway.oidc.web import security_headers
from posture_gateway.pages.notice import build_notice
from posture_gateway.state import state

__all__ = ["bp"]

bp = Blueprint("pages", __name__, template_folder="templates")


@bp.app_context_processor
def _helpdesk() -> dict[str, Any]:
    return {"helpdesk": state().settings.helpdesk}


def render_page(template: str, status: int = 200, **context: Any) -> Response:
    """Like the login flow's ``render_page`` but without a CSRF token: these pages have no
    forms, so they set no session cookie."""
    nonce = secrets.token_urlsafe(16)
    settings = state().settings
    body = render_template(template, csp_nonce=nonce, public_url=settings.public_url, **context)
    response = make_response(body, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return security_headers(response, nonce)


@bp.get("/")
@not_json("html page")
def landing() -> ResponseReturnValue:
    return render_page("pages/landing.html")


@bp.get("/privacy")
@not_json("html page")
def privacy() -> ResponseReturnValue:
    raw = request.args.get("ownership", Ownership.BYOD.value)
    try:
        ownership = Ownership(raw)
    except ValueError:
        return render_page(
            "oidc/error.html",
            400,
            title="Unknown kind of device",
            error="bad_request",
            message="Choose the notice for a personal (byod) or a company-owned (corporate) "
            "device.",
            retry_url=None,
        )
    core = state().core
    try:
        offboarding = core.policies.current().offboarding
    except PolicySetUnavailable:
        offboarding = ()
    actions = [p.actions[ownership] for p in offboarding if ownership in p.actions]
    notice = build_notice(core.privacy.for_ownership(ownership), actions)
    return render_page("pages/privacy.html", notice=notice)


@bp.get("/help/sign-in")
@not_json("html page")
def sign_in_help() -> ResponseReturnValue:
    return render_page("pages/sign_in_help.html")


@bp.get("/enroll")
@not_json("html page")
def enroll_help() -> ResponseReturnValue:
    return render_page("pages/enroll.html")
