"""Start-up validation of the provider's files and keys; fail closed when storage breaks."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from flask import Flask
from pydantic import SecretStr
from sqlalchemy import text

from posture_gateway.app import create_app
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.settings import ConfigError, Settings
from tests.integration.oidc.conftest import Browser, StubGate


def test_invalid_clients_file_stops_start(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad-clients.yaml"
    bad.write_text(
        "clients:\n  - client_id: x\n    token_endpoint_auth_method: none\n"
        "    redirect_uris: [http://evil.example/cb]\n"
    )
    broken = settings.model_copy(
        update={"oidc": settings.oidc.model_copy(update={"clients_file": bad})}
    )
    with pytest.raises(ConfigError, match=rf"{bad}:4: clients\[0\].redirect_uris"):
        create_app(broken)


def test_missing_key_passphrase_outside_dev_mode(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="key_passphrase"):
        create_app(
            settings.model_copy(
                update={
                    "dev_mode": False,
                    "ca": settings.ca.model_copy(update={"passphrase": SecretStr("x" * 20)}),
                }
            )
        )


def test_half_configured_pem_keys(settings: Settings, tmp_path: Path) -> None:
    broken = settings.model_copy(
        update={"oidc": settings.oidc.model_copy(update={"signing_key_path": tmp_path / "k.pem"})}
    )
    with pytest.raises(ConfigError, match="go together"):
        create_app(broken)


def _drop(app: Flask, table: str) -> None:
    with app.extensions["posture"].core.database.transaction() as conn:
        conn.execute(text(f"DROP TABLE {table}"))


def test_code_store_down_issues_nothing(app: Flask, browser: Browser) -> None:
    browser.authorize()
    browser.login()
    csrf, nonce = browser.device_page()
    _drop(app, "oidc_codes")
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": "p"}
    )
    assert response.status_code == 503 and "Location" not in response.headers


def test_token_store_down_issues_nothing(app: Flask, browser: Browser) -> None:
    code = browser.full_login()
    _drop(app, "oidc_tokens")
    response = browser.exchange(code)
    assert response.status_code == 503
    assert response.json == {
        "error": "temporarily_unavailable",
        "reason": "the grant store is unavailable",
    }
    info = browser.client.post("/oauth/introspect", data={"token": "x"}, headers={})
    assert info.status_code in (400, 401, 503)


def test_nonce_store_down_blocks_device_check(browser: Browser, provider: OIDCProvider) -> None:
    class Down:
        def issue(self, ttl: object) -> str:
            raise ConnectionError("redis down")

        def consume(self, nonce: str) -> bool:
            raise ConnectionError("redis down")

    browser.authorize()
    browser.login()
    provider.nonces = Down()
    assert browser.client.get("/login/device").status_code == 503


def test_nonce_store_failing_on_consume_refuses(browser: Browser, provider: OIDCProvider) -> None:
    browser.authorize()
    browser.login()
    csrf, nonce = browser.device_page()
    real = provider.nonces

    class FailingConsume:
        def issue(self, ttl: object) -> str:
            return real.issue(ttl)  # type: ignore[arg-type]

        def consume(self, nonce: str) -> bool:
            raise ConnectionError("redis down")

    provider.nonces = FailingConsume()
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": "p"}
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_authorize_with_store_down_redirects_nowhere(app: Flask, browser: Browser) -> None:
    _drop(app, "oidc_codes")
    response = browser.authorize()
    assert response.status_code == 503 and "Location" not in response.headers


def test_es256_client_gets_an_es256_key_at_start(settings: Settings, tmp_path: Path) -> None:
    clients = tmp_path / "es-clients.yaml"
    clients.write_text(
        "clients:\n  - client_id: es\n    token_endpoint_auth_method: none\n"
        "    redirect_uris: [http://127.0.0.1:9999/es]\n"
        "    id_token_signed_response_alg: ES256\n"
    )
    app = create_app(
        settings.model_copy(
            update={"oidc": settings.oidc.model_copy(update={"clients_file": clients})}
        )
    )
    try:
        provider = app.extensions["posture_oidc"]
        provider.gate = provider.binding = StubGate()
        discovery = app.test_client().get("/.well-known/openid-configuration").json
        assert discovery["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
        browser = Browser(
            app.test_client(),
            client_id="es",
            redirect_uri="http://127.0.0.1:9999/es",
            scope="openid",
        )
        response = browser.exchange(browser.full_login())
        assert response.status_code == 200
        header = jwt.get_unverified_header(response.json["id_token"])
        assert header["alg"] == "ES256" and header["kid"] == provider.keys.active("ES256").kid
        # The access token stays RS256 whatever the client's ID token algorithm.
        assert jwt.get_unverified_header(response.json["access_token"])["alg"] == "RS256"
    finally:
        app.extensions["posture"].core.close()
