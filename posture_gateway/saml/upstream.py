"""Broker mode with an upstream SAML IdP: an ``Authenticator`` of the one login.

:class:`SamlUpstreamAuthenticator` is offered on the login page (OIDC and SAML logins alike)
beside the password form and the upstream OpenID providers. ``begin(login_id)`` sends the
browser to the upstream IdP with an AuthnRequest on the HTTP-Redirect binding, signed
RSA-SHA256 with the gateway's key when the IdP's metadata asks for it
(``WantAuthnRequestsSigned``); the pending request (its ID, the login id) is kept in the
signed session, at most three at a time, and the RelayState is the request ID.

The IdP answers with an HTTP-POST to ``/saml/upstream/<name>/acs``. That POST is cross-site,
so the browser does not send our ``SameSite=Lax`` session cookie: the ACS keeps the
Response for two minutes in the shared login transaction store and sends the browser to
``/saml/upstream/<name>/continue?r=<id>`` (a top-level GET: the cookie comes along). There the
Response is verified by the protocol layer
(:func:`posture_gateway.saml.protocol.response_verifier.verify_response`: the IdP's metadata
certificates, Issuer, Audience = our SP entity id, Recipient = the ACS URL, InResponseTo = a
request THIS browser started, timestamps, one assertion, read from signed XML only), its
assertion ID is spent once in the shared replay store, the NameID (or the configured username
/ email attributes) is mapped to our directory user by the IdP's ``linking`` rule, and
:func:`posture_gateway.oidc.login.complete_authentication` continues with the device check.
Every failure ends on an error page; nothing is issued.

Our SP entity id for an upstream is ``{public_url}/saml/upstream/<name>``; its ACS URL is
``{public_url}/saml/upstream/<name>/acs``; ``{public_url}/saml/upstream/<name>/metadata`` is
our SP metadata for it (what to register at the IdP).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from idp_connectors.identity import ExternalIdentity, UserAccounts, UserDirectory
from posture_gateway.api.openapi import not_json
from posture_gateway.login.transactions import login_transactions
from posture_gateway.oidc.authn import AuthenticatedUser
from posture_gateway.oidc.login import complete_authentication
from posture_gateway.oidc.server import current_provider
from posture_gateway.oidc.web import render_page
from posture_gateway.saml.protocol.authn_request import build_authn_request
from posture_gateway.saml.protocol.bindings import decode_post, encode_redirect
from posture_gateway.saml.protocol.constants import BINDING_HTTP_REDIRECT
from posture_gateway.saml.protocol.errors import MetadataError, SamlError
from posture_gateway.saml.protocol.metadata import (
    IdentityProviderMetadata,
    parse_idp_metadata,
    sp_metadata_xml,
)
from posture_gateway.saml.protocol.response_verifier import verify_response
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.saml.protocol.values import new_id
from posture_gateway.saml.replay import RequestReplayGuard
from posture_gateway.saml.settings import SamlUpstreamIdpSettings
from posture_gateway.settings import ConfigError

__all__ = [
    "EXTENSION_KEY",
    "SamlUpstream",
    "SamlUpstreamAuthenticator",
    "authenticators",
    "bp",
    "install",
    "load_upstreams",
]

log = logging.getLogger(__name__)

bp = Blueprint("saml_upstream", __name__, template_folder="../pages/templates")

EXTENSION_KEY = "posture_saml_upstreams"
_SESSION_KEY = "saml_upstream_logins"
_MAX_OPEN = 3
_PARKED_TTL = timedelta(minutes=2)
_MESSAGES = {
    "upstream.denied": "Your identity provider did not sign you in.",
    "upstream.protocol": "Your identity provider answered in a way we do not accept.",
    "upstream.state_mismatch": "This sign-in response does not belong to a sign-in we started.",
    "upstream.replayed": "This sign-in response was already used.",
    "user.unknown": "Your account is not known to this gateway or is disabled.",
}


def _error_page(reason: str, status: int) -> Response:
    message = _MESSAGES.get(reason, "Your identity provider's answer could not be verified.")
    return render_page("login/upstream_error.html", status, message=message, reason=reason)


@dataclass(frozen=True)
class SamlUpstream:
    """One upstream SAML IdP: its metadata, our SP names for it, how users are mapped."""

    name: str
    label: str
    metadata: IdentityProviderMetadata
    sp_entity_id: str
    acs_url: str
    settings: SamlUpstreamIdpSettings
    replay: RequestReplayGuard
    directory: UserDirectory
    max_skew: timedelta

    def authn_request_url(self, request_id: str, now: datetime, signer: SamlSigner) -> str:
        """The HTTP-Redirect URL of a new AuthnRequest to this IdP, signed with ``signer``'s
        active RSA key when the IdP's metadata wants signed requests."""
        sso = self.metadata.sso_urls.get(BINDING_HTTP_REDIRECT)
        if sso is None:
            raise SamlError(f"upstream {self.name}: no HTTP-Redirect SingleSignOnService")
        _, xml = build_authn_request(
            issuer=self.sp_entity_id,
            destination=sso,
            acs_url=self.acs_url,
            now=now,
            request_id=request_id,
        )
        key: rsa.RSAPrivateKey | None = None
        if self.metadata.want_authn_requests_signed:
            private = signer.active_key().private_key
            if not isinstance(private, rsa.RSAPrivateKey):  # active_key() refuses others
                raise SamlError("the active signing key is not an RSA key")
            key = private
        return encode_redirect(sso, xml, relay_state=request_id, signing_key=key)


class SamlUpstreamAuthenticator:
    """One upstream SAML IdP on the login page (an ``oidc.authn.Authenticator``)."""

    def __init__(self, upstream: SamlUpstream) -> None:
        self.upstream = upstream

    @property
    def name(self) -> str:
        return f"saml-{self.upstream.name}"

    @property
    def label(self) -> str:
        return self.upstream.label

    def begin(self, login_id: str) -> ResponseReturnValue:
        request_id = new_id()
        try:
            # The key ring of the OpenID provider (one ring, one published certificate).
            signer = SamlSigner(current_provider().keys)
            url = self.upstream.authn_request_url(request_id, datetime.now(UTC), signer)
        except Exception:
            log.exception("saml upstream %s: cannot build the AuthnRequest", self.upstream.name)
            return _error_page("upstream.unavailable", 502)
        open_logins: dict[str, Any] = dict(session.get(_SESSION_KEY) or {})
        while len(open_logins) >= _MAX_OPEN:
            open_logins.pop(next(iter(open_logins)))
        open_logins[request_id] = {"login_id": login_id, "upstream": self.upstream.name}
        session[_SESSION_KEY] = open_logins
        return redirect(url, code=303)


def load_upstreams(
    settings: tuple[SamlUpstreamIdpSettings, ...],
    *,
    public_url: str,
    replay: RequestReplayGuard,
    directory_for: Callable[[dict[str, Any]], UserDirectory],
    max_skew: timedelta,
) -> dict[str, SamlUpstream]:
    """Every configured upstream IdP, its metadata parsed in full (raises ``ConfigError``)."""
    base = public_url.rstrip("/")
    parsed: list[tuple[SamlUpstreamIdpSettings, IdentityProviderMetadata]] = []
    for i, cfg in enumerate(settings):
        try:
            metadata = parse_idp_metadata(cfg.metadata_file.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"saml.upstream_idps[{i}]: {cfg.metadata_file}: cannot read: {exc.strerror}"
            ) from exc
        except (MetadataError, SamlError) as exc:
            raise ConfigError(f"saml.upstream_idps[{i}]: {cfg.metadata_file}: {exc}") from exc
        if BINDING_HTTP_REDIRECT not in metadata.sso_urls:
            raise ConfigError(
                f"saml.upstream_idps[{i}]: {cfg.metadata_file}: "
                "no HTTP-Redirect SingleSignOnService"
            )
        parsed.append((cfg, metadata))
    directory = directory_for({md.entity_id: cfg.linking for cfg, md in parsed})
    return {
        cfg.name: SamlUpstream(
            name=cfg.name,
            label=cfg.label or f"Sign in with {cfg.name}",
            metadata=md,
            sp_entity_id=f"{base}/saml/upstream/{cfg.name}",
            acs_url=f"{base}/saml/upstream/{cfg.name}/acs",
            settings=cfg,
            replay=replay,
            directory=directory,
            max_skew=max_skew,
        )
        for cfg, md in parsed
    }


def install(app: Flask, upstreams: Mapping[str, SamlUpstream]) -> None:
    app.extensions[EXTENSION_KEY] = dict(upstreams)


def _upstream(name: str) -> SamlUpstream | None:
    found: dict[str, SamlUpstream] = current_app.extensions[EXTENSION_KEY]
    return found.get(name)


@bp.get("/saml/upstream/<name>/metadata")
@not_json("SAML SP metadata (XML)")
def metadata(name: str) -> ResponseReturnValue:
    upstream = _upstream(name)
    if upstream is None:
        return _error_page("upstream.unknown", 404)
    body = sp_metadata_xml(
        entity_id=upstream.sp_entity_id,
        acs_url=upstream.acs_url,
        signing_certificates=SamlSigner(current_provider().keys).certificates(),
        authn_requests_signed=upstream.metadata.want_authn_requests_signed,
    )
    response = make_response(body, 200)
    response.headers["Content-Type"] = "application/samlmetadata+xml"
    return response


@bp.post("/saml/upstream/<name>/acs")
@not_json("SAML HTTP-POST binding: redirect")
def acs(name: str) -> ResponseReturnValue:
    """Park the cross-site POST (no session cookie here) and continue with a top-level GET."""
    if _upstream(name) is None:
        return _error_page("upstream.unknown", 404)
    form = request.form
    if any(len(form.getlist(k)) > 1 for k in ("SAMLResponse", "RelayState")):
        return _error_page("upstream.protocol", 400)
    try:
        parked = login_transactions().create(
            {
                "saml_upstream": name,
                "response": form.get("SAMLResponse", ""),
                "relay_state": form.get("RelayState", ""),
            },
            _PARKED_TTL,
        )
    except ValueError:  # over the transaction size limit
        return _error_page("upstream.protocol", 413)
    return redirect(url_for("saml_upstream.resume", name=name, r=parked), code=303)


def authenticators(upstreams: Mapping[str, SamlUpstream]) -> dict[str, SamlUpstreamAuthenticator]:
    """One login-page authenticator per upstream IdP, by name (``saml-<name>``)."""
    found = (SamlUpstreamAuthenticator(up) for up in upstreams.values())
    return {a.name: a for a in found}


def _account(directory: UserDirectory, user_id: str) -> Any:
    return directory.account(user_id) if isinstance(directory, UserAccounts) else None


@bp.get("/saml/upstream/<name>/continue")
@not_json("redirect to the device check or html error page")
def resume(name: str) -> ResponseReturnValue:
    upstream = _upstream(name)
    if upstream is None:
        return _error_page("upstream.unknown", 404)
    parked = login_transactions().take(request.args.get("r", ""))
    if not parked or parked.get("saml_upstream") != name:
        return _error_page("upstream.state_mismatch", 400)
    request_id = str(parked.get("relay_state", ""))
    open_logins: dict[str, Any] = dict(session.get(_SESSION_KEY) or {})
    pending = open_logins.pop(request_id, None)
    session[_SESSION_KEY] = open_logins  # single use, whatever happens next
    if not isinstance(pending, dict) or pending.get("upstream") != name:
        return _error_page("upstream.state_mismatch", 400)
    now = datetime.now(UTC)
    try:
        xml = decode_post(str(parked.get("response", "")))
        verified = verify_response(
            xml,
            idp_certs=upstream.metadata.signing_certificates,
            expected_issuer=upstream.metadata.entity_id,
            expected_audience=upstream.sp_entity_id,
            expected_recipient=upstream.acs_url,
            expected_in_response_to=request_id,
            now=now,
            max_skew=upstream.max_skew,
        )
    except SamlError as exc:
        log.warning("saml upstream %s: Response refused: %s (%s)", name, exc.reason, exc)
        reason = "upstream.denied" if exc.reason == "status_not_success" else "upstream.protocol"
        return _error_page(reason, 403)
    try:
        fresh = upstream.replay.first_use(
            upstream.metadata.entity_id, verified.assertion_id, verified.not_on_or_after
        )
    except Exception:
        log.exception("saml upstream %s: the replay store failed", name)
        return _error_page("upstream.unavailable", 503)
    if not fresh:
        return _error_page("upstream.replayed", 403)
    cfg = upstream.settings

    def attribute(key: str | None) -> str | None:
        values = verified.attributes.get(key, ()) if key else ()
        return values[0] if values else None

    username = attribute(cfg.username_attribute) or verified.name_id
    email = attribute(cfg.email_attribute)
    identity = ExternalIdentity(
        issuer=upstream.metadata.entity_id,
        subject=verified.name_id,
        username=username,
        email=email,
        email_verified=email is not None,  # asserted by a signed assertion of a trusted IdP
    )
    try:
        user_id = upstream.directory.resolve(identity)
        account = _account(upstream.directory, user_id) if user_id else None
    except Exception:
        log.exception("saml upstream %s: the directory failed", name)
        return _error_page("upstream.unavailable", 503)
    if user_id is None:
        return _error_page("user.unknown", 403)
    user = AuthenticatedUser(
        user_id=user_id,
        username=account.username if account else username,
        email=account.email if account else email,
        name=account.display_name if account else None,
        amr=("fed",),
        source=f"saml:{name}",
    )
    return complete_authentication(user, login_id=str(pending.get("login_id", "")))
