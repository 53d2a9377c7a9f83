"""Shared set-up of the SCIM tests: an app with two SCIM clients (okta, entra) and helpers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from posture_gateway.app import create_app
from posture_gateway.settings import Settings
from tests.e2e.live_server import POLICY_DIR

__all__ = [
    "OKTA_TOKEN",
    "ENTRA_TOKEN",
    "PUBLIC_URL",
    "scim_settings",
    "make_app",
    "Scim",
    "USER",
    "GROUP",
    "PATCH",
    "ENTERPRISE",
]

OKTA_TOKEN = "okta-" + "o" * 40
ENTRA_TOKEN = "entra-" + "e" * 40
PUBLIC_URL = "https://gw.example"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def scim_settings(tmp: Path, **scim: Any) -> dict[str, Any]:
    token_file = tmp / "entra-token"
    token_file.write_text(ENTRA_TOKEN + "\n")
    return {
        "clients": [
            {"id": "okta", "token_sha256": hashlib.sha256(OKTA_TOKEN.encode()).hexdigest()},
            {"id": "entra", "token_file": str(token_file)},
        ],
        **scim,
    }


def make_app(tmp: Path, database_url: str | None = None, **scim: Any) -> Iterator[Flask]:
    app = create_app(
        Settings.model_validate(
            {
                "data_dir": tmp / "data",
                "database_url": database_url,
                "dev_mode": True,
                "public_url": PUBLIC_URL,
                "policy_dir": POLICY_DIR,
                "scim": scim_settings(tmp, **scim),
            }
        )
    )
    try:
        yield app
    finally:
        app.extensions["posture"].core.close()


class Scim:
    """A SCIM client over the Flask test client, for one token."""

    def __init__(self, client: FlaskClient, token: str | None) -> None:
        self.client = client
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, **headers: str
    ) -> TestResponse:
        sent = dict(headers)
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        return self.client.open(
            "/scim/v2" + path,
            method=method,
            data=data,
            headers={k.replace("_", "-"): v for k, v in sent.items()},
            content_type="application/scim+json",
        )

    def user(self, user_name: str, **attrs: Any) -> dict[str, Any]:
        r = self.call("POST", "/Users", {"schemas": [USER], "userName": user_name, **attrs})
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.json  # type: ignore[no-any-return]

    def patch(self, path: str, *ops: dict[str, Any], **headers: str) -> TestResponse:
        return self.call("PATCH", path, {"schemas": [PATCH], "Operations": list(ops)}, **headers)
