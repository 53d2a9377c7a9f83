"""An Okta hook without a configured secret refuses every call, even one with a header."""

from __future__ import annotations

from flask import Flask

from tests.unit.posture_gateway.integrations.conftest import ScriptedDecisions
from tests.unit.posture_gateway.integrations.test_okta_hook import OKTA_REQUEST


def test_unconfigured_secret_refuses(app: Flask, decisions: ScriptedDecisions) -> None:
    for header in ({}, {"Authorization": ""}, {"Authorization": "anything"}):
        response = app.test_client().post("/hooks/okta/token", json=OKTA_REQUEST, headers=header)
        assert response.status_code == 401
    assert decisions.requests == []
