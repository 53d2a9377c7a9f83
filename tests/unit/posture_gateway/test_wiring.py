"""The composition root: every service is real and in place before the first request, the
front ends share one gate, one nonce store and one login transaction store, and the
gateway's tables come from the migrations (the app creates none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import inspect
from sqlalchemy.sql.schema import MetaData

from mdm_core.access.evaluator import AccessEvaluator
from posture_gateway.access.device_gate import PolicyDeviceBinding, evaluator
from posture_gateway.access.read_model import CachedBearerTokens, CachedUserDirectory
from posture_gateway.app import create_app
from posture_gateway.integrations.state import integrations
from posture_gateway.login.transactions import EXTENSION_KEY as TX_KEY
from posture_gateway.login.transactions import SqlLoginTransactionStore, login_transactions
from posture_gateway.oidc.login import complete_authentication
from posture_gateway.oidc.server import EXTENSION_KEY as OIDC_KEY
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.oidc.tables import metadata as gateway_metadata
from posture_gateway.settings import Settings
from posture_gateway.state import GatewayState


def _close(app: Flask) -> None:
    integrations(app).close()
    st = app.extensions["posture"]
    assert isinstance(st, GatewayState)
    st.core.close()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    def refuse(self: MetaData, *args: object, **kwargs: object) -> None:
        raise AssertionError("the gateway must not create tables: the migrations do")

    monkeypatch.setattr(MetaData, "create_all", refuse)
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True, public_url="http://127.0.0.1:8000"))
    try:
        yield app
    finally:
        _close(app)


def test_every_service_is_the_real_one_from_the_start(app: Flask) -> None:
    provider = app.extensions[OIDC_KEY]
    assert isinstance(provider, OIDCProvider)
    assert isinstance(provider.gate, AccessEvaluator)
    assert isinstance(provider.binding, PolicyDeviceBinding)
    st = integrations(app)
    assert st.evaluator is provider.gate  # one evaluator for every front end
    assert evaluator(app) is provider.gate  # what-if asks the same one
    assert isinstance(st.user_directory, CachedUserDirectory)  # over the resolver
    assert isinstance(st.access_tokens, CachedBearerTokens)
    assert st.complete_authentication is complete_authentication


def test_the_front_ends_share_one_gate_nonce_store_key_ring_and_transaction_store(
    app: Flask,
) -> None:
    provider = app.extensions[OIDC_KEY]
    st = integrations(app)
    assert st.evaluator is provider.gate
    assert st.nonces is provider.nonces
    assert st.signing_keys is provider.keys
    assert st.device_proof_audience == provider.issuer.issuer
    assert st.agent_port == provider.agent_port
    with app.app_context():
        assert login_transactions() is app.extensions[TX_KEY]
    assert isinstance(app.extensions[TX_KEY], SqlLoginTransactionStore)


def test_the_gateway_tables_come_from_the_migrations(app: Flask) -> None:
    st = app.extensions["posture"]
    assert isinstance(st, GatewayState)
    tables = set(inspect(st.core.database.engine).get_table_names())
    assert set(gateway_metadata.tables) <= tables


def test_services_are_installed_before_any_blueprint_is_registered(app: Flask) -> None:
    """Registration order: the first blueprint (health) sees the state already there, and
    no view reads a service through a fallback (a missing one is a KeyError, not a default)."""
    assert list(app.blueprints)[0] == "health"
    for key in ("posture", TX_KEY, OIDC_KEY, "posture_integrations"):
        assert key in app.extensions
    bare = Flask("bare")
    with bare.app_context(), pytest.raises(KeyError):
        login_transactions()
