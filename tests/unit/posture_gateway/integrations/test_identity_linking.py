"""Issue 7 finding 8 through the HTTP front ends, with the REAL directory resolver.

The Okta hook, Entra EAM and the posture API each name the user as (issuer, subject); the
resolver wired by ``create_app`` links by that pair under each integration's own rule. Before
the fix any of them naming ``alice`` (by login, UPN or username) became alice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from pydantic import SecretStr

from idp_connectors.entra import EntraHintSettings, EntraHintValidator
from idp_connectors.http import make_client
from idp_connectors.identity import IdentityLinking
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.integrations.settings import (
    EntraEamSettings,
    IntegrationSettings,
    OktaHookSettings,
    PostureApiSettings,
)
from posture_gateway.integrations.state import integrations
from tests.helpers.entra_double import EntraDouble
from tests.unit.posture_gateway.integrations.conftest import hidden_fields
from tests.unit.posture_gateway.integrations.test_okta_hook import OKTA_REQUEST, SECRET
from tests.unit.posture_gateway.integrations.test_posture_api import bearer, issue

ENTRA = EntraDouble()
OKTA_ID = OKTA_REQUEST["data"]["context"]["user"]["id"]


def _settings(**linking: IdentityLinking) -> IntegrationSettings:
    none = IdentityLinking()
    return IntegrationSettings(
        okta=OktaHookSettings(secret=SecretStr(SECRET), linking=linking.get("okta", none)),
        entra=EntraEamSettings(
            hint=EntraHintSettings(tenant_ids=(ENTRA.tenant_id,), app_id=ENTRA.app_id),
            client_id="eam-client",
            linking=linking.get("entra", none),
        ),
        posture_api=PostureApiSettings(
            user_linking=linking.get("api", IdentityLinking(link_by="username"))
        ),
    )


@pytest.fixture
def integration_settings(request: pytest.FixtureRequest) -> IntegrationSettings:
    return _settings(**getattr(request, "param", {}))


@pytest.fixture
def mirror(app: Flask) -> Any:
    core = app.extensions["posture"].core
    for uid, name in (("u-alice", "alice@example.com"), ("u-eve", "eve@contoso.example")):
        core.directory.upsert_user(
            DirectoryUser(
                id=uid, username=name, active=True, source="scim", updated_at=datetime.now(UTC)
            )
        )
    return core


def links(app: Flask, user_id: str) -> list[tuple[str, str]]:
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        return [(x.issuer, x.subject) for x in uow.identity_links.for_user(user_id)]


def okta(app: Flask, user_id: str = OKTA_ID, login: str = "alice@example.com") -> dict[str, Any]:
    body = {**OKTA_REQUEST, "data": {**OKTA_REQUEST["data"]}}
    context = {**body["data"]["context"], "user": {"id": user_id, "profile": {"login": login}}}
    body["data"]["context"] = context
    response = app.test_client().post(
        "/hooks/okta/token", json=body, headers={"Authorization": SECRET}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    ops = response.json["commands"][0]["value"]
    return {op["path"].removeprefix("/claims/"): op["value"] for op in ops}


# ---- Okta hook --------------------------------------------------------------------------------


def test_okta_login_name_alone_is_not_alice(app: Flask, mirror: Any) -> None:
    claims = okta(app)  # default rule: only pre-linked Okta ids
    assert claims["posture_reasons"] == ["user_unknown"]
    assert links(app, "u-alice") == []


@pytest.mark.parametrize(
    "integration_settings", [{"okta": IdentityLinking(link_by="username")}], indirect=True
)
def test_okta_opted_in_links_the_okta_id_and_refuses_a_second_id(app: Flask, mirror: Any) -> None:
    assert "user_unknown" not in okta(app)["posture_reasons"]
    assert links(app, "u-alice") == [("okta", OKTA_ID)]
    # another Okta account whose login is alice's: not alice
    assert okta(app, user_id="00uIMPOSTER")["posture_reasons"] == ["user_unknown"]
    assert links(app, "u-alice") == [("okta", OKTA_ID)]
    # the linked id keeps resolving whatever login Okta sends now
    assert "user_unknown" not in okta(app, login="renamed@example.com")["posture_reasons"]


# ---- Entra EAM --------------------------------------------------------------------------------


def _entra(app: Flask, claims: dict[str, Any]) -> tuple[int, dict[str, str]]:
    st = integrations(app)
    assert st.settings.entra is not None
    st.entra = EntraHintValidator(st.settings.entra.hint, http=make_client(ENTRA.transport()))
    form = ENTRA.authorize_form(client_id="eam-client", id_token_hint=ENTRA.hint(claims))
    response = app.test_client().post("/entra/eam/authorize", data=form)
    return response.status_code, hidden_fields(response.get_data(as_text=True))


def test_entra_upn_alone_is_not_alice(app: Flask, mirror: Any) -> None:
    _, answer = _entra(app, ENTRA.hint_claims(preferred_username="alice@example.com"))
    assert answer["error"] == "access_denied" and answer["error_description"] == "user_unknown"
    assert links(app, "u-alice") == []


@pytest.mark.parametrize(
    "integration_settings",
    [{"entra": IdentityLinking(link_by="username", allowed_username_domains=("contoso.example",))}],
    indirect=True,
)
def test_entra_links_upns_of_its_own_domain_only(app: Flask, mirror: Any) -> None:
    _, answer = _entra(app, ENTRA.hint_claims(preferred_username="alice@example.com"))
    assert answer.get("error") == "access_denied"  # example.com is not Entra's to claim
    assert links(app, "u-alice") == []
    eve = ENTRA.hint_claims(preferred_username="eve@contoso.example")
    _, answer = _entra(app, eve)
    assert "error" not in answer and answer.get("device_nonce")  # on to the device check
    assert links(app, "u-eve") == [(f"entra:{ENTRA.tenant_id}", eve["oid"])]


# ---- posture API ------------------------------------------------------------------------------


def _decide(app: Flask, user: str) -> dict[str, Any]:
    body = {"user": user, "client_id": "payroll"}
    response = app.test_client().post("/api/v1/decision", json=body, headers=bearer(issue(app)))
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.json)


def test_posture_api_names_directory_users_by_username_per_caller(app: Flask, mirror: Any) -> None:
    answer = _decide(app, "alice@example.com")
    assert answer["reasons"][0]["code"] != "user_unknown"  # unknown device, not unknown user
    assert links(app, "u-alice") == [("posture-api:okta-idp", "alice@example.com")]


@pytest.mark.parametrize("integration_settings", [{"api": IdentityLinking()}], indirect=True)
def test_posture_api_with_pre_linked_users_only(app: Flask, mirror: Any) -> None:
    assert _decide(app, "alice@example.com")["reasons"][0]["code"] == "user_unknown"
    assert links(app, "u-alice") == []


def test_posture_api_nul_in_user_is_not_an_outage(app: Flask, mirror: Any) -> None:
    body = {"user": "alice\u0000", "client_id": "payroll"}
    response = app.test_client().post("/api/v1/decision", json=body, headers=bearer(issue(app)))
    assert response.status_code < 500
    assert response.json["outcome"] == "block"
    assert links(app, "u-alice") == []
