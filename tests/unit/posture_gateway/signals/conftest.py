"""An app with two Shared Signals receivers (``rx-a``, ``rx-b``) and a plain client
(``other-rp``), over SQLite; helpers to get tokens and to write outbox events."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from mdm_core.bus.events import DomainEvent
from mdm_core.runtime import MdmCore
from posture_gateway.app import create_app
from posture_gateway.oidc.passwords import hash_client_secret
from posture_gateway.settings import Settings
from posture_gateway.signals.state import SignalsState

SECRET = "ssf-receiver-secret-" + "s" * 24
PUBLIC_URL = "https://gw.example"
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
DCC = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"


def write_clients(path: Path, ids: tuple[str, ...] = ("rx-a", "rx-b", "other-rp")) -> Path:
    hashed = hash_client_secret(SECRET)
    path.write_text(
        "clients:\n"
        + "".join(
            f"  - client_id: {cid}\n"
            f"    client_secret_hash: '{hashed}'\n"
            "    redirect_uris: ['https://unused.example/cb']\n"
            for cid in ids
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def signals_extra() -> dict[str, Any]:
    return {}


@pytest.fixture
def app(tmp_path: Path, signals_extra: dict[str, Any]) -> Iterator[Flask]:
    clients = write_clients(tmp_path / "clients.yaml")
    app = create_app(
        Settings(
            data_dir=tmp_path / "data",
            dev_mode=True,
            public_url=PUBLIC_URL,
            oidc={"clients_file": clients},
            signals={
                "receivers": [
                    {"client_id": "rx-a", "audience": "https://rx-a.example", "max_streams": 2},
                    {"client_id": "rx-b"},
                ],
                **signals_extra,
            },
        )
    )
    try:
        yield app
    finally:
        signals_state(app).close()
        app.extensions["posture"].core.close()


def signals_state(app: Flask) -> SignalsState:
    st = app.extensions["posture_signals"]
    assert isinstance(st, SignalsState)
    return st


def core_of(app: Flask) -> MdmCore:
    core = app.extensions["posture"].core
    assert isinstance(core, MdmCore)
    return core


def basic(client_id: str, secret: str = SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def token(app: Flask, client_id: str, scope: str = "ssf.manage ssf.read") -> str:
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=basic(client_id),
    )
    assert response.status_code == 200, response.json
    value = response.json["access_token"]
    assert isinstance(value, str)
    return value


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def add_events(app: Flask, *events: DomainEvent) -> None:
    """Write events to the outbox in a unit of work, as the core's services do."""
    with core_of(app).storage.unit_of_work() as uow:
        uow.outbox.add(list(events))


def flip(
    device_id: str = "dev-1", user_id: str = "u-alice", to: str = "noncompliant"
) -> DomainEvent:
    before = "compliant" if to != "compliant" else "noncompliant"
    return DomainEvent(
        type="compliance.changed",
        subject=device_id,
        payload={
            "device_id": device_id,
            "user_id": user_id,
            "state": to,
            "previous_state": before,
            "outcome": "block" if to != "compliant" else "allow",
            "previous_outcome": "allow",
            "failing_rules": ["baseline/encryption"],
        },
    )
