"""The gateway, an enrolled device and its loopback login helper, all real, on ephemeral ports.

:func:`login_stack` starts the app factory under werkzeug's threaded server on 127.0.0.1
(dev mode, SQLite in the test's temp directory, the shipped policies) with a clients file
naming one relying party and a users file with one local password user, who is also in the
directory mirror. It enrolls a device for that user, checks it in over HTTP with request
proofs (the simulator's native report for the platform and traits), and runs the agent's real
:class:`LoopbackHelper` for that device key with the gateway's origin; the gateway's
``oidc.agent_port`` is that helper's port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from mdm_core.agent.keys import DeviceKey as AgentKey
from mdm_core.agent.loopback import LoopbackHelper
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import create_app
from posture_gateway.oidc.passwords import hash_client_secret, hash_password
from posture_gateway.oidc.tables import oidc_codes
from posture_gateway.settings import Settings
from tests.e2e.live_server import POLICY_DIR
from tests.helpers.device_keys import DeviceKey
from tests.helpers.enrolled import EnrolledDevice, enroll_device

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "USERNAME", "PASSWORD", "USER_ID", "Stack", "login_stack"]

CLIENT_ID = "browser-app"
CLIENT_SECRET = "browser-app-secret-" + "s" * 32
USERNAME = "alice"
USER_ID = "u-alice"
PASSWORD = "alice-browser-password-1"


class _Dispatch:
    """A WSGI app settable after the server bound its port (the issuer needs the port)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@dataclass
class Stack:
    url: str
    app: Flask
    device: EnrolledDevice
    helper: LoopbackHelper

    @property
    def core(self) -> MdmCore:
        core = self.app.extensions["posture"].core
        assert isinstance(core, MdmCore)
        return core

    def codes_issued(self) -> int:
        with self.core.database.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(oidc_codes)).scalar_one())

    def decisions(self) -> list[Any]:
        with self.core.storage.unit_of_work() as uow:
            return [
                e for e in uow.audit.recent(self.device.device_id) if e.action == "access.decision"
            ]


def _write_files(tmp_path: Path, redirect_uri: str) -> tuple[Path, Path]:
    clients = tmp_path / "clients.yaml"
    clients.write_text(
        f"""
clients:
  - client_id: {CLIENT_ID}
    name: Browser App
    client_secret_hash: "{hash_client_secret(CLIENT_SECRET)}"
    redirect_uris: ["{redirect_uri}"]
    scopes: [openid, profile, email]
    grant_types: [authorization_code]
""",
        encoding="utf-8",
    )
    users = tmp_path / "users.yaml"
    users.write_text(
        f"""
users:
  - username: {USERNAME}
    user_id: {USER_ID}
    password_hash: "{hash_password(PASSWORD, n=2**10)}"
    email: alice@example.com
    name: Alice Example
""",
        encoding="utf-8",
    )
    return clients, users


def _check_in(url: str, device: EnrolledDevice, platform: Platform, traits: DeviceTraits) -> None:
    endpoint = url + "/mdm/v1/checkin"
    serial = "SER" + device.device_id[:8]
    with httpx.Client(timeout=10) as http:
        for fmt, report in native_reports(platform.value, serial, "corporate", traits):
            body = json.dumps({"format": fmt, "report": report}).encode()
            response = http.post(
                endpoint,
                content=body,
                headers={
                    "Device-Proof": device.request_proof("POST", endpoint, body),
                    "Content-Type": "application/json",
                },
            )
            assert response.status_code == 200, response.text


@contextmanager
def login_stack(
    tmp_path: Path,
    redirect_uri: str,
    platform: Platform,
    traits: DeviceTraits,
    extra_settings: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    dispatch = _Dispatch()
    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    key = DeviceKey.generate()
    # The helper binds its port now (the gateway is configured with it); the device id is
    # known once the device has enrolled with this same key.
    helper = LoopbackHelper(AgentKey(key.private_key), "not-enrolled-yet", url).start()
    clients, users = _write_files(tmp_path, redirect_uri)
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "server",
            "public_url": url,
            "policy_dir": POLICY_DIR,
            "dev_mode": True,
            "oidc": {"clients_file": clients, "users_file": users, "agent_port": helper.port},
            **(extra_settings or {}),
        }
    )
    try:
        app = create_app(settings)
    except BaseException:
        helper.stop()
        server.server_close()
        raise
    dispatch.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        core: MdmCore = app.extensions["posture"].core
        core.directory.upsert_user(
            DirectoryUser(
                id=USER_ID,
                username=USERNAME,
                active=True,
                source="local",
                updated_at=datetime.now(UTC),
            )
        )
        device = enroll_device(
            core, USER_ID, ownership=Ownership.CORPORATE, platform=platform, key=key
        )
        _check_in(url, device, platform, traits)
        helper.device_id = device.device_id
        yield Stack(url=url, app=app, device=device, helper=helper)
    finally:
        helper.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        app.extensions["posture"].core.close()
