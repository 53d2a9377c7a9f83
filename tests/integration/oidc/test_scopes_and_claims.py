"""Issue 7 finding 9: scopes and claims of the OpenID provider.

- Unknown scopes are ignored (OIDC Core 3.1.2.1), and scopes the client may not have are left
  out of the grant; only a request without ``openid`` is ``invalid_scope``.
- The ``groups`` scope releases the ``groups`` claim: the user's directory groups from the
  mirror, nested groups expanded, read when the token is issued (so a refresh sees a move).
- One definition of the claims (``posture_gateway/oidc/claims.py``) drives the tokens (a
  posture claim it does not define never reaches a token), the discovery document and the
  claim table of ``docs/oidc-provider.md``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask

from mdm_core.access.decision import Decision
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind
from posture_gateway.oidc import claims as definition
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.settings import Settings
from tests.integration.oidc.conftest import ISSUER, Browser, StubGate, basic, write_files

DOC = Path(__file__).resolve().parents[3] / "docs" / "oidc-provider.md"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    clients, users = write_files(tmp_path)
    text = clients.read_text(encoding="utf-8")
    # conf may have the groups scope; pub may not
    clients.write_text(
        text.replace(
            "scopes: [openid, profile, email]", "scopes: [openid, profile, email, groups]"
        ),
        encoding="utf-8",
    )
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": ISSUER,
            "oidc": {"clients_file": clients, "users_file": users},
        }
    )


def _id_token(provider: OIDCProvider, token: str, aud: str = "conf") -> dict[str, Any]:
    key = provider.keys.active("RS256")
    return jwt.decode(token, key.public_key, algorithms=["RS256"], audience=aud, issuer=ISSUER)


@pytest.fixture
def alice_in_groups(app: Flask) -> Any:
    """u-alice in the mirror: member of payroll, which is nested in finance."""
    directory = app.extensions["posture"].core.directory
    now = datetime.now(UTC)
    directory.upsert_user(
        DirectoryUser(id="u-alice", username="alice", active=True, source="local", updated_at=now)
    )
    for gid, name in (("g-fin", "finance"), ("g-pay", "payroll"), ("g-mkt", "marketing")):
        directory.upsert_group(DirectoryGroup(id=gid, name=name, source="local", updated_at=now))
    directory.add_member("g-fin", "g-pay", MemberKind.GROUP)
    directory.add_member("g-pay", "u-alice", MemberKind.USER)
    return directory


def test_unknown_scopes_are_ignored_not_refused(browser: Browser, provider: OIDCProvider) -> None:
    code = browser.full_login(scope="openid profile admin urn:example:unknown")
    response = browser.exchange(code)
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "openid profile"
    claims = _id_token(provider, response.json["id_token"])
    assert claims["preferred_username"] == "alice"
    assert "email" not in claims  # not requested


def test_a_scope_the_client_may_not_have_is_left_out(
    public_browser: Browser, provider: OIDCProvider
) -> None:
    # pub may have openid and email only
    code = public_browser.full_login(scope="openid email profile groups offline_access")
    response = public_browser.exchange(code)
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "openid email"
    claims = _id_token(provider, response.json["id_token"], aud="pub")
    assert "groups" not in claims and "name" not in claims


def test_without_openid_it_is_still_invalid_scope(browser: Browser) -> None:
    response = browser.authorize(scope="profile admin")
    assert response.status_code == 302
    assert "error=invalid_scope" in response.headers["Location"]


def test_groups_scope_releases_directory_groups_nested(
    browser: Browser, provider: OIDCProvider, alice_in_groups: Any
) -> None:
    code = browser.full_login(scope="openid groups")
    tokens = browser.exchange(code).json
    assert tokens["scope"] == "openid groups"
    claims = _id_token(provider, tokens["id_token"])
    assert claims["groups"] == ["finance", "payroll"]
    userinfo = browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json
    assert userinfo == {"sub": "u-alice", "groups": ["finance", "payroll"]}
    # the user moves from payroll to marketing: the next token carries the new groups
    alice_in_groups.remove_member("g-pay", "u-alice", MemberKind.USER)
    alice_in_groups.add_member("g-mkt", "u-alice", MemberKind.USER)
    refreshed = browser.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic(),
    )
    assert refreshed.status_code == 200, refreshed.json
    assert _id_token(provider, refreshed.json["id_token"])["groups"] == ["marketing"]


def test_no_groups_without_the_scope(
    browser: Browser, provider: OIDCProvider, alice_in_groups: Any
) -> None:
    tokens = browser.exchange(browser.full_login()).json
    assert "groups" not in _id_token(provider, tokens["id_token"])


def test_groups_of_a_user_not_in_the_mirror_is_empty(
    browser: Browser, provider: OIDCProvider
) -> None:
    tokens = browser.exchange(browser.full_login(scope="openid groups")).json
    assert _id_token(provider, tokens["id_token"])["groups"] == []


def test_only_defined_posture_claims_reach_the_token(
    browser: Browser, provider: OIDCProvider, gate: StubGate
) -> None:
    gate.verdict = Decision(
        outcome="allow",
        device_id="dev-1",
        evaluated_policy_ids=("baseline",),
        posture_age_s=12.7,
        device="Mac (company-owned, ID dev-1)",  # page text, never a claim
        snapshot="used",
    )
    claims = _id_token(provider, browser.exchange(browser.full_login()).json["id_token"])
    assert claims["compliance_state"] == "compliant"
    assert claims["posture_policy_ids"] == ["baseline"] and claims["posture_age_s"] == 12
    assert "device_compliance" not in claims and "device" not in claims
    undefined = set(claims) - set(definition.claims_supported())
    assert undefined == set(), undefined


def test_discovery_is_the_definition(app: Flask) -> None:
    document = app.test_client().get("/.well-known/openid-configuration").json
    assert document["claims_supported"] == definition.claims_supported()
    assert document["scopes_supported"] == list(definition.SUPPORTED_SCOPES)
    for name in ("compliance_state", "posture_policy_ids", "posture_age_s", "groups"):
        assert name in document["claims_supported"]
    assert "groups" in document["scopes_supported"]


def _doc_table() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("<!-- claims:begin -->")
    end = text.index("<!-- claims:end -->")
    rows = [line for line in text[start:end].splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_docs_claim_table_is_the_definition(app: Flask) -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("<!-- claims:begin -->") + len("<!-- claims:begin -->")
    end = text.index("<!-- claims:end -->")
    assert text[start:end].strip() == definition.markdown_table()
    names = [row[0].strip("`") for row in _doc_table()]
    document = app.test_client().get("/.well-known/openid-configuration").json
    assert names == document["claims_supported"]
    # the names the docs used to give, which no token ever carried, are gone
    assert not re.search(r"`(device_compliance|policy_ids)`", text)


def test_the_device_gate_verdict_carries_only_defined_claims() -> None:
    from datetime import timedelta

    from mdm_core.access.decision import from_engine
    from mdm_core.policy.model import Decision as EngineDecision
    from mdm_core.policy.model import Outcome, Restrictions
    from posture_gateway.login.device_check import decision_claims

    now = datetime.now(UTC)
    decision = EngineDecision(
        outcome=Outcome.ALLOW,
        reasons=(),
        policy_ids=(),
        evaluated_policy_ids=("baseline",),
        posture_age=timedelta(seconds=5),
        quarantine=False,
        restrictions=Restrictions(),
        report_only=(),
        failing_rules=frozenset(),
        evaluated_at=now,
    )
    claims = decision_claims(from_engine(decision, device_id="dev-1"))
    assert set(claims) <= definition.POSTURE_CLAIMS
    assert {"device_id", "compliance_state", "posture_policy_ids", "posture_age_s"} <= set(claims)
