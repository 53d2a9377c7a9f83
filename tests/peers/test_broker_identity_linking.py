"""Issue 7 finding 8 in broker mode, against two real upstream IdPs (npm ``oidc-provider``).

Both upstreams assert the same person: ``sub: alice``, ``preferred_username: alice``,
``email: alice@upstream.example`` (verified). The gateway's real resolver
(:class:`~posture_gateway.directory.identity.DirectoryUserResolver`, wired by ``create_app``)
links by (issuer, subject) under each upstream's own rule: ``corp`` may link by verified email
in ``upstream.example``; ``partner`` may not claim that user, whatever name it asserts — its
login is refused and NOTHING is linked for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp_connectors.identity import IdentityLinking
from idp_connectors.oidc_upstream import UpstreamOidcSettings
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import create_app
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.integrations.state import integrations
from posture_gateway.settings import Settings
from tests.peers.test_broker_oidc_provider import (
    PUBLIC_URL,
    RP_REDIRECT,
    UPSTREAM_SECRET,
    _browse_upstream,
    _callback_path,
    _start_login,
)
from tests.peers.upstream_idp import UpstreamIdp

pytestmark = pytest.mark.peer

CORP_CB = f"{PUBLIC_URL}/login/upstream/corp/callback"
PARTNER_CB = f"{PUBLIC_URL}/login/upstream/partner/callback"
CORP_RULE = IdentityLinking(link_by="email", allowed_email_domains=("upstream.example",))


@pytest.fixture(scope="module")
def corp() -> Iterator[UpstreamIdp]:
    idp = UpstreamIdp("gateway", UPSTREAM_SECRET, CORP_CB, account_id="alice").start()
    try:
        yield idp
    finally:
        idp.stop()


@pytest.fixture(scope="module")
def partner() -> Iterator[UpstreamIdp]:
    idp = UpstreamIdp("gateway", UPSTREAM_SECRET, PARTNER_CB, account_id="alice").start()
    try:
        yield idp
    finally:
        idp.stop()


def _app(tmp_path: Path, corp: UpstreamIdp, partner: UpstreamIdp, rule: IdentityLinking) -> Flask:
    clients = tmp_path / "clients.yaml"
    clients.write_text(
        "clients:\n  - client_id: rp\n    token_endpoint_auth_method: none\n"
        f"    redirect_uris: ['{RP_REDIRECT}']\n    scopes: [openid, profile, email]\n",
        encoding="utf-8",
    )
    upstreams = tuple(
        UpstreamOidcSettings(
            name=name,
            issuer=idp.issuer,
            client_id="gateway",
            client_secret=UPSTREAM_SECRET,
            linking=linking,
        )
        for name, idp, linking in (("corp", corp, CORP_RULE), ("partner", partner, rule))
    )
    settings = Settings(
        data_dir=tmp_path,
        dev_mode=True,
        public_url=PUBLIC_URL,
        oidc={"clients_file": clients},
        integrations=IntegrationSettings(upstreams=upstreams),
    )
    app = create_app(settings)
    app.extensions["posture"].core.directory.upsert_user(
        DirectoryUser(
            id="u-alice",
            username="alice",
            email="alice@upstream.example",
            active=True,
            source="scim",
            updated_at=datetime.now(UTC),
        )
    )
    return app


@pytest.fixture
def make_app(tmp_path: Path, corp: UpstreamIdp, partner: UpstreamIdp) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(rule: IdentityLinking | None = None) -> Flask:
        path = tmp_path / str(len(apps))
        path.mkdir()
        apps.append(_app(path, corp, partner, rule or IdentityLinking()))
        return apps[-1]

    yield make
    for app in apps:
        integrations(app).close()
        app.extensions["posture"].core.close()


def _login_via(app: Flask, name: str, callback: str) -> Any:
    client = app.test_client()
    _start_login(client)
    started = client.get(f"/login/with/upstream-{name}")
    assert started.status_code == 303, started.get_data(as_text=True)[:500]
    returned = _browse_upstream(started.headers["Location"], stop_prefix=callback)
    return client, client.get(_callback_path(returned))


def _links(app: Flask) -> list[tuple[str, str, str]]:
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        return [(x.issuer, x.subject, x.method) for x in uow.identity_links.for_user("u-alice")]


def test_first_login_links_by_verified_email_then_by_iss_sub(
    make_app: Any, corp: UpstreamIdp
) -> None:
    app = make_app()
    client, response = _login_via(app, "corp", CORP_CB)
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    assert response.headers["Location"].endswith("/login/device")
    assert _links(app) == [(corp.issuer, "alice", "email")]
    _, again = _login_via(app, "corp", CORP_CB)  # now by (iss, sub)
    assert again.status_code == 303
    assert _links(app) == [(corp.issuer, "alice", "email")]


@pytest.mark.parametrize(
    "rule",
    [
        IdentityLinking(),  # default: only pre-linked identities
        IdentityLinking(link_by="email", allowed_email_domains=("partner.example",)),
        IdentityLinking(link_by="username", allowed_username_domains=("partner.example",)),
    ],
    ids=["none", "email-other-domain", "username-other-domain"],
)
def test_a_second_upstream_asserting_alices_name_is_refused_and_nothing_linked(
    make_app: Any, corp: UpstreamIdp, partner: UpstreamIdp, rule: IdentityLinking
) -> None:
    app = make_app(rule)
    _, first = _login_via(app, "corp", CORP_CB)
    assert first.status_code == 303  # alice is linked at corp
    client, response = _login_via(app, "partner", PARTNER_CB)
    assert response.status_code == 403
    assert b"user.unknown" in response.data
    assert client.get("/login/device").status_code != 200  # the login did not continue
    assert _links(app) == [(corp.issuer, "alice", "email")]  # nothing linked for partner


def test_a_partner_refused_before_any_link_links_nothing(
    make_app: Any, partner: UpstreamIdp
) -> None:
    app = make_app()
    _, response = _login_via(app, "partner", PARTNER_CB)
    assert response.status_code == 403 and b"user.unknown" in response.data
    assert _links(app) == []


def test_a_link_to_a_disabled_user_gives_no_access(make_app: Any, corp: UpstreamIdp) -> None:
    app = make_app()
    assert _login_via(app, "corp", CORP_CB)[1].status_code == 303
    app.extensions["posture"].core.directory.set_active("u-alice", False)
    _, response = _login_via(app, "corp", CORP_CB)
    assert response.status_code == 403 and b"user.unknown" in response.data
    assert _links(app) == [(corp.issuer, "alice", "email")]  # the link stays; access does not


def test_our_tokens_carry_our_names_not_the_upstreams(make_app: Any, corp: UpstreamIdp) -> None:
    """The upstream asserts preferred_username alice; our directory calls her alice.smith."""
    app = make_app()
    app.extensions["posture"].core.directory.upsert_user(
        DirectoryUser(
            id="u-alice",
            username="alice.smith",
            email="alice@upstream.example",
            display_name="Alice Smith",
            active=True,
            source="scim",
            updated_at=datetime.now(UTC),
        )
    )
    handed: list[Any] = []

    def complete(user: Any, *, login_id: str) -> Any:
        handed.append(user)
        return "continued"

    integrations(app).complete_authentication = complete
    _, response = _login_via(app, "corp", CORP_CB)
    assert response.get_data(as_text=True) == "continued"
    (user,) = handed
    assert (user.user_id, user.username, user.name) == ("u-alice", "alice.smith", "Alice Smith")
    assert user.email == "alice@upstream.example"
