"""Which protocol a browser login answers in: the OIDC code flow, or another front end.

The browser login pages (:mod:`posture_gateway.oidc.login`: who is the user, the device
check, the warn notice, the remediation page) are the ONE login of the gateway. A front end
other than OIDC (the SAML IdP, :mod:`posture_gateway.saml.flow`) starts a login transaction
of its own (the same :mod:`posture_gateway.login.transactions` store, the same session key)
marked with its name in ``tx["front_end"]``, and registers a :class:`LoginFrontEnd` under
that name with :func:`install`. The pages then run as for OIDC and hand over at two points:

- :meth:`LoginFrontEnd.decided`, right after the device check decided (every outcome): a
  response ends the login there (the SAML IdP answers an ``IsPassive`` request's block with a
  SAML error instead of a page); ``None`` lets the pages go on (remediation page, warn notice);
- :meth:`LoginFrontEnd.needs_credentials`, when a login inside an SSO session proved another
  device and the pages would ask for credentials again: a response ends the login there (the
  SAML IdP answers an ``IsPassive`` request with ``NoPassive``), ``None`` shows the page;
- :meth:`LoginFrontEnd.issue`, where OIDC would issue its code (allow, restrict, warn after
  the notice), once the transaction was taken (single use): the front end's answer (a signed
  SAML Response posted to the ACS URL). The pages created or kept the SSO session first
  (:mod:`posture_gateway.sso`): the transaction handed over carries its ``sid``.

A transaction naming a front end that is not installed ends the login (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flask import Flask, Response, current_app

from mdm_core.access.decision import Decision
from mdm_core.access.request import Channel

__all__ = [
    "init",
    "EXTENSION_KEY",
    "FRONT_END_KEY",
    "LoginFrontEnd",
    "UnknownFrontEnd",
    "front_end_of",
    "install",
]

EXTENSION_KEY = "posture_login_front_ends"
#: The key of a login transaction that names its front end (absent: the OIDC code flow).
FRONT_END_KEY = "front_end"


class UnknownFrontEnd(LookupError):
    """A login transaction names a front end this app does not have."""


class LoginFrontEnd(Protocol):
    """A protocol front end that finishes browser logins its own way."""

    @property
    def channel(self) -> Channel:
        """The access evaluator's channel for this front end's device checks (audit)."""
        ...

    def decided(self, tx: Mapping[str, Any], verdict: Decision) -> Response | None:
        """The device check decided ``verdict``: a response ends the login here (the caller
        ends the transaction), ``None`` lets the login pages continue."""
        ...

    def needs_credentials(self, tx: Mapping[str, Any]) -> Response | None:
        """The login must ask for credentials again (another device than the session's): a
        response ends the login here (the caller ends the transaction), ``None`` shows the
        credentials page."""
        ...

    def issue(self, tx: Mapping[str, Any], verdict: Decision) -> Response:
        """Answer the relying party for an admitted ``verdict`` (allow, restrict, warn); the
        transaction was already taken (single use); ``tx["sid"]`` is the SSO session's public
        id (None when sessions are off). Never raises: a failure is an error page."""
        ...


def init(app: Flask) -> None:
    """Install the (empty) front-end registry; the login pages' setup calls it before any
    front end is installed, so a lookup never needs a fallback."""
    app.extensions.setdefault(EXTENSION_KEY, {})


def install(app: Flask, name: str, front_end: LoginFrontEnd) -> None:
    """Register ``front_end`` for the login transactions marked ``name``."""
    if not name or name == "oidc":
        raise ValueError("a login front end needs a name other than oidc")
    if EXTENSION_KEY not in app.extensions:
        raise RuntimeError("the login pages are not set up: call front_ends.init(app) first")
    app.extensions[EXTENSION_KEY][name] = front_end


def front_end_of(tx: Mapping[str, Any]) -> LoginFrontEnd | None:
    """The front end ``tx`` answers in; ``None`` for the OIDC code flow. Raises
    :class:`UnknownFrontEnd` when ``tx`` names one this app does not have."""
    name = tx.get(FRONT_END_KEY)
    if name is None:
        return None
    front_ends: dict[str, LoginFrontEnd] = current_app.extensions[EXTENSION_KEY]
    front_end = front_ends.get(str(name))
    if front_end is None:
        raise UnknownFrontEnd(str(name))
    return front_end
