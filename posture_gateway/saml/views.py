"""The SAML IdP endpoints (blueprint ``saml``): metadata, SSO, IdP-initiated start.

- ``GET /saml/metadata``: our IdP metadata (entity id, the SSO URL for the HTTP-Redirect and
  HTTP-POST bindings, every RSA certificate the key ring publishes, ``WantAuthnRequestsSigned``
  when every SP must sign), ``application/samlmetadata+xml``;
- ``GET|POST /saml/sso``: an SP-initiated AuthnRequest on the HTTP-Redirect (query, its
  signature over the raw query octets) or HTTP-POST binding (form, enveloped signature),
  validated by the protocol layer (:mod:`posture_gateway.saml.protocol.authn_request`:
  registered issuer, signature by the SP's metadata certificates — required when the SP
  requires it —, Destination, IssueInstant window, the ACS resolved EXACTLY against the
  metadata, RelayState bounded), its ID spent once in the shared replay store, then
  :func:`posture_gateway.saml.flow.start_login`;
- ``GET /saml/sso/continue``: where a login started above goes next (a top-level GET
  navigation, which carries the ``SameSite=Lax`` SSO cookie even after the SP's cross-site
  POST): :func:`posture_gateway.saml.flow.resume_login` uses the SSO session or asks for
  credentials;
- ``GET /saml/idp-initiated?sp=<entity id>[&RelayState=]``: an unsolicited login for an SP
  configured ``allow_idp_initiated: true``, answered to its default ACS.

A request we cannot trust (unknown SP, bad or missing signature, unknown ACS URL, replayed
ID, stale, malformed) gets an error page and is NEVER answered to any URL: until the SP and
its ACS are known from metadata there is nowhere safe to send anything. Every refusal is one
decision log line (``posture.decision``, channel ``saml``) with its reason code.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, make_response, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from mdm_core.domain.infra_errors import InfraError
from posture_gateway.api.openapi import not_json
from posture_gateway.observability.decisions import log_decision
from posture_gateway.saml.flow import (
    NameId,
    SamlLoginRequest,
    error_page,
    resume_login,
    start_login,
)
from posture_gateway.saml.idp import SamlIdp, current_idp, saml_configured
from posture_gateway.saml.protocol.authn_request import (
    AuthnRequest,
    parse_post_authn_request,
    parse_redirect_authn_request,
)
from posture_gateway.saml.protocol.bindings import check_relay_state
from posture_gateway.saml.protocol.errors import BindingError, SamlError
from posture_gateway.saml.protocol.metadata import idp_metadata_xml
from posture_gateway.saml.protocol.xml_safety import XmlLimits

__all__ = ["bp", "METADATA_PATH", "SSO_PATH", "RESUME_PATH", "IDP_INITIATED_PATH"]

log = logging.getLogger(__name__)

bp = Blueprint("saml", __name__, template_folder="../pages/templates")

METADATA_PATH = "/saml/metadata"
SSO_PATH = "/saml/sso"
RESUME_PATH = "/saml/sso/continue"
IDP_INITIATED_PATH = "/saml/idp-initiated"

#: What the user reads for each refusal reason of the protocol layer.
_MESSAGES = {
    "unknown_sp": "This application is not registered with the sign-in service.",
    "unknown_acs": "The application asked to be answered at an address it has not registered.",
    "signature_missing": "The application's request must be signed, and it was not.",
    "signature_invalid": "The application's request signature is not valid.",
    "algorithm_unsupported": "The application's request is signed with a refused algorithm.",
    "destination_mismatch": "The request was meant for another sign-in service.",
    "message_stale": "The request is too old (or from the future). Start again.",
    "binding_invalid": "The request is malformed.",
    "request_replayed": "This sign-in request was already used. Go back to the application.",
}


def _not_configured() -> Response:
    return error_page("saml_not_configured", "SAML sign-in is not set up on this gateway.", 404)


def _refuse(reason: str, *, sp: str | None, detail: str = "") -> Response:
    log.warning("saml request refused: %s %s", reason, detail[:300])
    log_decision(
        "block",
        channel="saml",
        app=sp,
        device_id=None,
        reasons=[reason],
        rules=[],
        policy_ids=[],
        posture_age_s=None,
        started=None,
    )
    return error_page(reason, _MESSAGES.get(reason, "This sign-in request cannot be accepted."))


def _limits(idp: SamlIdp) -> XmlLimits:
    return XmlLimits(max_relay_state=idp.settings.max_relay_state)


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(InfraError)
def _store_down(_: Exception) -> Response:
    return error_page(
        "temporarily_unavailable", "Sign-in is unavailable right now. Try again.", 503
    )


@bp.get(METADATA_PATH)
@not_json("SAML metadata (XML)")
def metadata() -> ResponseReturnValue:
    if not saml_configured():
        return _not_configured()
    idp = current_idp()
    try:
        body = idp_metadata_xml(
            entity_id=idp.entity_id,
            sso_url=idp.sso_url,
            signing_certificates=idp.signer.certificates(),
            want_authn_requests_signed=idp.want_signed_requests,
        )
    except SamlError as exc:  # no signing certificate: nothing to publish
        log.error("saml metadata unavailable: %s", exc)
        return error_page("unavailable", "The IdP metadata is unavailable.", 503)
    response = make_response(body, 200)
    response.headers["Content-Type"] = "application/samlmetadata+xml"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _parse(idp: SamlIdp, now: datetime) -> AuthnRequest:
    """The request on whichever binding it came (raises a ``SamlError`` on any problem)."""
    cfg = idp.settings
    limits = _limits(idp)
    if request.method == "POST":
        form = request.form
        if any(len(form.getlist(name)) > 1 for name in ("SAMLRequest", "RelayState")):
            raise BindingError("a SAML form parameter is repeated")
        return parse_post_authn_request(
            form.get("SAMLRequest", ""),
            relay_state=form.get("RelayState"),
            registry=idp.registry,
            sso_url=idp.sso_url,
            now=now,
            max_age=cfg.request_max_age,
            max_skew=cfg.clock_skew,
            limits=limits,
        )
    return parse_redirect_authn_request(
        request.query_string,
        registry=idp.registry,
        sso_url=idp.sso_url,
        now=now,
        max_age=cfg.request_max_age,
        max_skew=cfg.clock_skew,
        limits=limits,
    )


@bp.route(SSO_PATH, methods=["GET", "POST"])
@not_json("SAML binding: redirect to the login pages, html error page or form_post answer")
def sso() -> ResponseReturnValue:
    if not saml_configured():
        return _not_configured()
    idp = current_idp()
    now = datetime.now(UTC)
    try:
        authn = _parse(idp, now)
    except SamlError as exc:
        return _refuse(exc.reason, sp=None, detail=str(exc))
    sp = authn.service_provider
    remember_until = authn.issue_instant + idp.settings.request_max_age + idp.settings.clock_skew
    try:
        fresh = idp.replay.first_use(sp.entity_id, authn.id, remember_until)
    except Exception:
        log.exception("saml: the replay store failed; refusing the request")
        return error_page("temporarily_unavailable", "Sign-in is unavailable right now.", 503)
    if not fresh:
        return _refuse("request_replayed", sp=sp.entity_id, detail=authn.id)
    subject = (
        NameId(authn.subject_name_id, authn.subject_name_id_format)
        if authn.subject_name_id
        else None
    )
    if sp.config.okta_factor and not authn.signed:  # the parser refuses it already
        return _refuse("signature_missing", sp=sp.entity_id)
    return start_login(
        idp,
        SamlLoginRequest(
            sp=sp,
            acs_url=authn.acs.url,
            request_id=authn.id,
            relay_state=authn.relay_state,
            passive=authn.is_passive,
            force_authn=authn.force_authn,
            subject=subject,
        ),
    )


@bp.get(RESUME_PATH)
@not_json("redirect to the login pages, html error page or form_post answer")
def resume() -> ResponseReturnValue:
    if not saml_configured():
        return _not_configured()
    return resume_login()


@bp.get(IDP_INITIATED_PATH)
@not_json("redirect to the login pages or html error page")
def idp_initiated() -> ResponseReturnValue:
    if not saml_configured():
        return _not_configured()
    idp = current_idp()
    args = request.args
    if any(len(args.getlist(name)) > 1 for name in args):
        return _refuse("binding_invalid", sp=None, detail="repeated parameter")
    entity_id = args.get("sp", "")
    sp = idp.provider(entity_id) if entity_id else None
    if sp is None:
        return _refuse("unknown_sp", sp=None, detail=entity_id[:200])
    if not sp.config.allow_idp_initiated:
        log.warning("saml: IdP-initiated login refused for %s (not allowed)", sp.entity_id)
        return error_page(
            "idp_initiated_not_allowed",
            "This application does not accept sign-ins started here. Open the application.",
            403,
        )
    if sp.config.okta_factor:  # the user comes from a signed request only
        return error_page("idp_initiated_not_allowed", "Open the application to sign in.", 403)
    try:
        relay_state = check_relay_state(args.get("RelayState"), limits=_limits(idp))
        acs = sp.default_acs()
    except SamlError as exc:
        return _refuse(exc.reason, sp=sp.entity_id, detail=str(exc))
    return start_login(
        idp,
        SamlLoginRequest(sp=sp, acs_url=acs.url, request_id=None, relay_state=relay_state),
    )
