"""Fixtures for the integration endpoints: a real app (create_app) and small test seams.

The decision service, the user directory and the device gate are the seams the lead wires to
the policy engine, the directory mirror and the device-proof check; here they are small test
implementations that record what they were asked.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp_connectors.entra import EntraHintValidator
from idp_connectors.http import make_client
from idp_connectors.identity import ExternalIdentity
from mdm_core.access.decision import Decision, Reason
from mdm_core.access.request import AccessRequest
from posture_gateway.app import GatewayState, create_app
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.integrations.state import integrations
from posture_gateway.settings import Settings
from tests.helpers.entra_double import EntraDouble

PUBLIC_URL = "http://127.0.0.1:8000"


class DictDirectory:
    """Users by (issuer, subject) or by username."""

    def __init__(self) -> None:
        self.by_subject: dict[tuple[str, str], str] = {}
        self.by_username: dict[str, str] = {}
        self.seen: list[ExternalIdentity] = []
        self.fail = False

    def resolve(self, identity: ExternalIdentity) -> str | None:
        self.seen.append(identity)
        if self.fail:
            raise ConnectionError("directory down")
        found = self.by_subject.get((identity.issuer, identity.subject))
        if found is None and identity.username:
            found = self.by_username.get(identity.username)
        return found


class ScriptedDecisions:
    """Answers every request with ``decision`` (or raises ``error``); with ``hold`` set it
    first waits until the test releases it (``finished`` says whether it has answered)."""

    def __init__(self) -> None:
        self.requests: list[AccessRequest] = []
        self.decision = Decision(
            outcome="allow",
            reasons=(),
            policy_ids=("baseline",),
            evaluated_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
            posture_age_s=42.0,
            device_id="dev-1",
        )
        self.error: Exception | None = None
        self.hold: threading.Event | None = None
        self.finished = False

    def decide(self, request: AccessRequest) -> Decision:
        self.requests.append(request)
        if self.hold is not None:
            self.hold.wait(timeout=60)
        self.finished = True
        if self.error is not None:
            raise self.error
        return self.decision


class ScriptedGate:
    """The access evaluator as a device check sees it: answers ``verdict`` (or raises
    ``error``), recording the requests."""

    def __init__(self) -> None:
        self.calls: list[AccessRequest] = []
        self.verdict = Decision(outcome="allow", device_id="dev-1")
        self.error: Exception | None = None

    def decide(self, request: AccessRequest) -> Decision:
        self.calls.append(request)
        if self.error is not None:
            raise self.error
        return self.verdict


def block_verdict(code: str = "encryption_off") -> Decision:
    return Decision(
        outcome="block",
        reasons=(Reason(code=code, message="Disk encryption is off.", policy_id="baseline"),),
        remediation=("Turn on FileVault.",),
    )


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a rendered page (form_post answers, device check form)."""
    found = re.findall(r'<input type="hidden" name="([^"]+)"(?: id="[^"]*")? value="([^"]*)"', page)
    return {name: html.unescape(value) for name, value in found}


def form_action(page: str, form_id: str) -> str:
    match = re.search(rf'<form method="post" action="([^"]+)" id="{form_id}"', page)
    assert match, page[:2000]
    return html.unescape(match.group(1))


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    """Overridden by test modules that need a configured integration."""
    return IntegrationSettings()


@pytest.fixture
def app_settings_extra() -> dict[str, Any]:
    """More top-level Settings fields (e.g. ``oidc``) for modules that need them."""
    return {}


@pytest.fixture
def app(
    tmp_path: Path, integration_settings: IntegrationSettings, app_settings_extra: dict[str, Any]
) -> Iterator[Flask]:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            public_url=PUBLIC_URL,
            integrations=integration_settings,
            **app_settings_extra,
        )
    )
    try:
        yield app
    finally:
        integrations(app).close()
        state = app.extensions["posture"]
        assert isinstance(state, GatewayState)
        state.core.close()


@pytest.fixture
def directory(app: Flask) -> DictDirectory:
    directory = DictDirectory()
    integrations(app).user_directory = directory
    return directory


@pytest.fixture
def decisions(app: Flask) -> ScriptedDecisions:
    service = ScriptedDecisions()
    integrations(app).evaluator = service
    return service


@pytest.fixture
def gate(app: Flask) -> ScriptedGate:
    gate = ScriptedGate()
    integrations(app).evaluator = gate
    return gate


#: The Entra tenant of the Entra modules (a double that follows Entra's published contract:
#: a cloud SaaS that cannot be reached from here).
ENTRA = EntraDouble()


@pytest.fixture
def entra(app: Flask) -> EntraDouble:
    st = integrations(app)
    assert st.settings.entra is not None
    # Entra's JWKS comes through the double's transport.
    st.entra = EntraHintValidator(st.settings.entra.hint, http=make_client(ENTRA.transport()))
    return ENTRA


@pytest.fixture
def alice_claims(entra: EntraDouble, directory: DictDirectory) -> dict[str, Any]:
    claims = entra.hint_claims()
    directory.by_subject[(f"entra:{entra.tenant_id}", claims["oid"])] = "u-alice"
    return claims
