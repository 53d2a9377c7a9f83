"""Issue 7 finding 4: nothing that quarantine, revocation, retirement or wipe ends survives it.

A real login through the real device gate (enrolled device, signed check-ins, the shipped
policies plus one access policy for the test client), on SQLite AND PostgreSQL. Then:

- a jailbroken check-in (quarantine), ``posture enroll revoke`` through the CLI (retirement),
  and an acknowledged wipe / selective wipe each end the refresh token (``invalid_grant``), make
  introspection answer ``active: false`` and userinfo 401 — because the tokens were revoked
  in the same transaction (``revoked_reason`` says which), and, as defence in depth, because
  lookups check the device's current status even when no revocation happened;
- a device that became ``warn`` / ``restrict`` refreshes to an ID token carrying the claims
  just evaluated (``posture_outcome``, ``compliance_state: noncompliant``) and, for restrict,
  narrowed scopes; a healthy one refreshes to a freshly evaluated ``posture_evaluated_at``;
- if the token revocation fails, the quarantine rolls back, and the reverse.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import Connection, select, update

from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import devices, rule_failures
from posture_gateway.cli.main import cli
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.oidc.sql_grants import ConnectionTokenRevoker
from posture_gateway.oidc.tables import oidc_tokens
from posture_gateway.settings import Settings
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.integration.oidc.conftest import Browser, basic, form_value

ROOT = Path(__file__).resolve().parents[3]
USER = "u-alice"

# The test client ``conf`` as a low-sensitivity app: warn allowed, restrict narrows scopes.
TEST_ACCESS = """
---
kind: AccessPolicy
id: test-conf-app
applications:
  - client_id: conf
    name: Test app
sensitivity: low
outcomes:
  warn: allow
  restrict: {scopes: [openid, email]}
"""


@pytest.fixture
def app(settings: Settings, database: Database, tmp_path: Path) -> Iterator[Flask]:
    """The conftest app, on SQLite or PostgreSQL, with the real gate and binding."""
    from posture_gateway.app import create_app

    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    with (policies / "access.yaml").open("a", encoding="utf-8") as out:
        out.write(TEST_ACCESS)
    built = create_app(
        settings.model_copy(update={"database_url": database.url, "policy_dir": policies})
    )
    # Unhandled errors answer 500 (as in production) instead of propagating into the test.
    built.config["TESTING"] = False
    yield built
    built.extensions["posture"].core.close()


def _core(app: Flask) -> MdmCore:
    core = app.extensions["posture"].core
    assert isinstance(core, MdmCore)
    return core


class Session:
    """One user, one enrolled device, one login's tokens, and the calls a client makes."""

    def __init__(self, app: Flask, provider: OIDCProvider, platform: Platform) -> None:
        self.app = app
        self.provider = provider
        self.platform = platform
        core = _core(app)
        core.directory.upsert_user(
            DirectoryUser(id=USER, username="alice", active=True, source="local", updated_at=_now())
        )
        self.device: EnrolledDevice = enroll_device(
            core, USER, ownership=Ownership.CORPORATE, platform=platform
        )
        self.browser = Browser(app.test_client())
        self.tokens: dict[str, Any] = {}

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def check_in(self, traits: DeviceTraits) -> list[dict[str, Any]]:
        """Every native report for the traits, signed; returns the commands delivered."""
        client = self.app.test_client()
        url = _core(self.app).config.public_url + "/mdm/v1/checkin"
        delivered: list[dict[str, Any]] = []
        for fmt, report in native_reports(self.platform.value, "SER1", "corporate", traits):
            body = json.dumps({"format": fmt, "report": report}).encode()
            res = client.post(
                "/mdm/v1/checkin",
                data=body,
                headers={"Device-Proof": self.device.request_proof("POST", url, body)},
                content_type="application/json",
            )
            assert res.status_code == 200, res.get_data(as_text=True)
            delivered.extend(res.get_json().get("commands", []))
        return delivered

    def raw_check_in(self, traits: DeviceTraits) -> list[int]:
        """Every native report for the traits, signed; the status of each answer."""
        client = self.app.test_client()
        url = _core(self.app).config.public_url + "/mdm/v1/checkin"
        statuses = []
        for fmt, report in native_reports(self.platform.value, "SER1", "corporate", traits):
            body = json.dumps({"format": fmt, "report": report}).encode()
            res = client.post(
                "/mdm/v1/checkin",
                data=body,
                headers={"Device-Proof": self.device.request_proof("POST", url, body)},
                content_type="application/json",
            )
            statuses.append(res.status_code)
        return statuses

    def answer(self, command_id: str, status: str) -> Any:
        path = f"/mdm/v1/commands/{command_id}/result"
        url = _core(self.app).config.public_url + path
        body = json.dumps({"status": status}).encode()
        return self.app.test_client().post(
            path,
            data=body,
            headers={"Device-Proof": self.device.request_proof("POST", url, body)},
            content_type="application/json",
        )

    def code(self) -> str:
        b = self.browser
        assert b.authorize().status_code == 303
        assert b.login().status_code == 303
        csrf, nonce = b.device_page()
        proof = self.device.login_proof(audience=self.provider.issuer.issuer, nonce=nonce)
        response = b.client.post(
            "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
        )
        if response.status_code == 200 and "/login/continue" in response.get_data(as_text=True):
            page = response.get_data(as_text=True)
            response = b.client.post(
                "/login/continue",
                data={
                    "csrf_token": form_value(page, "csrf_token"),
                    "ticket": form_value(page, "ticket"),
                },
            )
        return b.code_from(response)

    def login(self) -> dict[str, Any]:
        response = self.browser.exchange(self.code())
        assert response.status_code == 200, response.get_data(as_text=True)
        self.tokens = response.get_json()
        return self.tokens

    def refresh(self, token: str | None = None, **extra: str) -> Any:
        return self.browser.client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": token or self.tokens["refresh_token"],
                **extra,
            },
            headers=basic(),
        )

    def introspect(self, token: str, hint: str | None = None) -> dict[str, Any]:
        data = {"token": token, **({"token_type_hint": hint} if hint else {})}
        response = self.browser.client.post("/oauth/introspect", data=data, headers=basic())
        assert response.status_code == 200
        body: dict[str, Any] = response.get_json()
        return body

    def userinfo(self, access_token: str | None = None) -> Any:
        token = access_token or self.tokens["access_token"]
        return self.browser.client.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {token}"}
        )

    def revoked_reasons(self) -> set[str | None]:
        with _core(self.app).database.engine.connect() as conn:
            rows = conn.execute(
                select(oidc_tokens.c.revoked_reason).where(
                    oidc_tokens.c.device_id == self.device_id
                )
            ).all()
        return {row.revoked_reason for row in rows}

    def status(self) -> DeviceStatus:
        with _core(self.app).storage.unit_of_work() as uow:
            record = uow.devices.get(self.device_id)
        assert record is not None
        return record.status

    def assert_all_dead(self) -> None:
        """Refresh refused, both tokens inactive at introspection, userinfo refused."""
        refused = self.refresh()
        assert refused.status_code == 400, refused.get_data(as_text=True)
        assert refused.get_json()["error"] == "invalid_grant"
        assert self.introspect(self.tokens["access_token"]) == {"active": False}
        assert self.introspect(self.tokens["refresh_token"], "refresh_token") == {"active": False}
        info = self.userinfo()
        assert info.status_code == 401
        assert info.get_json()["error"] == "invalid_token"


def _now() -> datetime:
    return datetime.now(UTC)


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _decisions(app: Flask, device_id: str, channel: str) -> list[Any]:
    with _core(app).storage.unit_of_work() as uow:
        entries = uow.audit.recent(device_id, limit=200)
    return [e for e in entries if e.action == "access.decision" and e.detail["channel"] == channel]


@pytest.fixture
def ios(app: Flask, provider: OIDCProvider) -> Session:
    session = Session(app, provider, Platform.IOS)
    session.check_in(DeviceTraits())
    session.login()
    return session


@pytest.fixture
def mac(app: Flask, provider: OIDCProvider) -> Session:
    session = Session(app, provider, Platform.MACOS)
    session.check_in(DeviceTraits())
    session.login()
    return session


def _all_alive(session: Session) -> None:
    assert session.introspect(session.tokens["access_token"])["active"] is True
    assert session.introspect(session.tokens["refresh_token"], "refresh_token")["active"] is True
    assert session.userinfo().status_code == 200


# ---- (a) quarantine ---------------------------------------------------------------------


def test_jailbroken_checkin_ends_refresh_introspection_and_userinfo(ios: Session) -> None:
    _all_alive(ios)
    assert _claims(ios.tokens["id_token"])["compliance_state"] == "compliant"
    ios.check_in(DeviceTraits(jailbroken=True))
    assert ios.status() is DeviceStatus.QUARANTINED
    # Revoked by the quarantine's own transaction (not only refused by the status check).
    assert ios.revoked_reasons() == {"device_quarantined"}
    ios.assert_all_dead()


def test_refresh_after_quarantine_is_audited_as_a_block(ios: Session, app: Flask) -> None:
    # Even a token that escaped the revocation meets the refresh decision: block, audited.
    with _core(app).database.engine.begin() as conn:
        conn.execute(
            update(devices)
            .where(devices.c.id == ios.device_id)
            .values(status=DeviceStatus.QUARANTINED.value)
        )
    ios.assert_all_dead()
    assert ios.revoked_reasons() == {"refresh_blocked"}
    blocked = _decisions(app, ios.device_id, "oidc_refresh")
    assert blocked and blocked[0].outcome == "block"
    assert "device_quarantined" in blocked[0].detail["reasons"]


@pytest.mark.parametrize(
    "status",
    [DeviceStatus.QUARANTINED, DeviceStatus.RETIRED, DeviceStatus.WIPED],
)
def test_lookups_check_the_device_status_even_when_no_revocation_ran(
    ios: Session, app: Flask, status: DeviceStatus
) -> None:
    """Defence in depth: the status changed behind the lifecycle's back (no revocation)."""
    with _core(app).database.engine.begin() as conn:
        conn.execute(
            update(devices).where(devices.c.id == ios.device_id).values(status=status.value)
        )
    assert ios.revoked_reasons() == {None}  # nothing was revoked
    assert ios.introspect(ios.tokens["access_token"]) == {"active": False}
    assert ios.introspect(ios.tokens["refresh_token"], "refresh_token") == {"active": False}
    assert ios.userinfo().status_code == 401


def test_lookups_refuse_a_token_whose_device_is_gone(ios: Session, app: Flask) -> None:
    # The issuance names a device the MDM does not know (its record and column both).
    with _core(app).database.engine.begin() as conn:
        for row in conn.execute(
            select(oidc_tokens.c.id, oidc_tokens.c.subject).where(
                oidc_tokens.c.device_id == ios.device_id
            )
        ).all():
            subject = {**row.subject, "device_id": "no-such-device"}
            conn.execute(
                update(oidc_tokens)
                .where(oidc_tokens.c.id == row.id)
                .values(device_id="no-such-device", subject=subject)
            )
    assert ios.introspect(ios.tokens["access_token"]) == {"active": False}
    assert ios.userinfo().status_code == 401


def test_code_issued_before_quarantine_cannot_be_exchanged(
    app: Flask, provider: OIDCProvider
) -> None:
    session = Session(app, provider, Platform.IOS)
    session.check_in(DeviceTraits())
    code = session.code()
    session.check_in(DeviceTraits(jailbroken=True))
    response = session.browser.exchange(code)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    with _core(app).database.engine.connect() as conn:
        issued = conn.execute(
            select(oidc_tokens.c.id).where(oidc_tokens.c.device_id == session.device_id)
        ).all()
    assert issued == []


# ---- (b) posture enroll revoke ------------------------------------------------------------


def test_enroll_revoke_through_the_cli_ends_every_token(
    ios: Session, settings: Settings, database: Database
) -> None:
    _all_alive(ios)
    env = {
        "POSTURE_DEV_MODE": "true",
        "POSTURE_DATA_DIR": str(settings.data_dir),
        "POSTURE_DATABASE_URL": database.url,
        "POSTURE_POLICY_DIR": str(ROOT / "policies"),
    }
    result = CliRunner().invoke(
        cli, ["enroll", "revoke", ios.device_id, "--reason", "stolen"], env=env
    )
    assert result.exit_code == 0, result.output
    assert ios.status() is DeviceStatus.RETIRED
    assert ios.revoked_reasons() == {"device_retired"}
    ios.assert_all_dead()


# ---- (c) retirement and wipe ------------------------------------------------------------


@pytest.mark.parametrize("command", ["wipe", "selective_wipe"])
def test_acknowledged_wipe_ends_every_token(ios: Session, app: Flask, command: str) -> None:
    queued = _core(app).commands.enqueue(ios.device_id, command, created_by="admin:test")
    delivered = ios.check_in(DeviceTraits())
    assert queued.id in [c["id"] for c in delivered]
    _all_alive(ios)  # delivered, not yet done: the device still works
    answered = ios.answer(queued.id, "acknowledged")
    assert answered.status_code == 200, answered.get_data(as_text=True)
    # The status is the offboarding flow's business; the credentials end with the wipe.
    assert ios.status() is DeviceStatus.ACTIVE
    assert ios.revoked_reasons() == {f"{command}_acknowledged"}
    ios.assert_all_dead()


def test_revoking_a_retired_device_again_still_revokes(ios: Session, app: Flask) -> None:
    core = _core(app)
    core.enrollment.revoke_device(ios.device_id, actor="admin:test", reason="lost")
    ios.assert_all_dead()
    with core.storage.unit_of_work() as uow:
        audited = [e for e in uow.audit.recent(ios.device_id) if e.action == "credentials.revoked"]
    assert audited and audited[0].detail["reason"] == "device_retired"


def test_disabling_the_user_ends_their_tokens(ios: Session, app: Flask) -> None:
    _core(app).directory.set_active(USER, False)
    assert ios.revoked_reasons() == {"user_disabled"}
    ios.assert_all_dead()


def test_re_enrollment_ends_the_tokens_of_the_old_key(ios: Session, app: Flask) -> None:
    core = _core(app)
    from mdm_core.device.enrollment import EnrollmentRequest
    from tests.helpers.device_keys import DeviceKey

    token = core.enrollment.create_token(
        USER, Ownership.CORPORATE, Platform.IOS, timedelta(hours=1), "admin:test"
    )
    core.enrollment.enroll(
        EnrollmentRequest(
            csr_pem=DeviceKey.generate().csr_pem(),
            platform=Platform.IOS,
            ownership=Ownership.CORPORATE,
            token=token,
            device_id=ios.device_id,
        )
    )
    assert ios.revoked_reasons() == {"re_enrolled"}
    ios.assert_all_dead()


# ---- (d) warn / restrict: claims and scopes of the decision just made ---------------------


def test_device_now_warn_refreshes_with_the_new_claims(mac: Session, app: Flask) -> None:
    first = _claims(mac.tokens["id_token"])
    assert first["posture_outcome"] == "allow" and first["compliance_state"] == "compliant"
    mac.check_in(DeviceTraits(old_os=True))  # os-current: warn at once
    response = mac.refresh()
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    claims = _claims(body["id_token"])
    assert claims["posture_outcome"] == "warn"
    assert claims["compliance_state"] == "noncompliant"
    assert body["scope"] == "openid profile email"
    assert claims["preferred_username"] == "alice"
    audited = _decisions(app, mac.device_id, "oidc_refresh")
    assert audited and audited[0].outcome == "warn"


def test_device_now_restricted_refreshes_with_narrowed_scopes(mac: Session, app: Flask) -> None:
    mac.check_in(DeviceTraits(old_os=True))
    # The os-current rule has failed for 8 days: past its 7-day warn -> restrict grace.
    with _core(app).database.engine.begin() as conn:
        moved = conn.execute(
            update(rule_failures)
            .where(rule_failures.c.device_id == mac.device_id)
            .values(first_failed_at=_now() - timedelta(days=8))
        ).rowcount
    assert moved >= 1
    response = mac.refresh()
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    claims = _claims(body["id_token"])
    assert claims["posture_outcome"] == "restrict"
    assert claims["compliance_state"] == "noncompliant"
    assert body["scope"] == "openid email"
    assert "preferred_username" not in claims and "name" not in claims
    assert claims["email"] == "alice@example.com"
    info = mac.userinfo(body["access_token"]).get_json()
    assert "preferred_username" not in info and info["email"] == "alice@example.com"
    assert mac.introspect(body["access_token"])["scope"] == "openid email"


# ---- (e) healthy: freshly evaluated ------------------------------------------------------


def test_healthy_device_refreshes_with_a_fresh_evaluation(mac: Session, app: Flask) -> None:
    first = _claims(mac.tokens["id_token"])
    time.sleep(1.1)  # posture_evaluated_at has a resolution of one second
    before = int(time.time())
    response = mac.refresh()
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    claims = _claims(body["id_token"])
    assert claims["posture_outcome"] == "allow" and claims["compliance_state"] == "compliant"
    assert claims["posture_evaluated_at"] >= before > first["posture_evaluated_at"]
    assert claims["device_id"] == mac.device_id
    assert "nonce" not in claims
    assert body["scope"] == "openid profile email"
    audited = _decisions(app, mac.device_id, "oidc_refresh")
    assert [e.outcome for e in audited] == ["allow"]
    # The rotated token works, the old one is spent (and its replay kills the family).
    again = mac.refresh(body["refresh_token"])
    assert again.status_code == 200
    assert mac.refresh().get_json()["error"] == "invalid_grant"


def test_refresh_decision_unavailable_spends_nothing(
    mac: Session, provider: OIDCProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(**_: Any) -> Any:
        raise RuntimeError("policy engine down")

    monkeypatch.setattr(provider.binding, "recheck", explode)
    response = mac.refresh()
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert mac.revoked_reasons() == {None}
    monkeypatch.undo()
    assert mac.refresh().status_code == 200  # the same refresh token, unspent


def test_refresh_cannot_widen_scope_and_spends_nothing(mac: Session) -> None:
    mac.browser.scope = "openid email"
    mac.login()
    widened = mac.refresh(scope="openid email profile")
    assert widened.get_json()["error"] == "invalid_scope"
    assert mac.refresh().status_code == 200


# ---- (f) atomicity -----------------------------------------------------------------------


class _FailingRevoker:
    """Revokes for real on the unit of work's connection, then fails (or fails at once)."""

    def __init__(self, conn: Connection, *, revoke_first: bool) -> None:
        self._real = ConnectionTokenRevoker(conn)
        self._revoke_first = revoke_first

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        if self._revoke_first:
            assert self._real.revoke_for_device(device_id, reason=reason, at=at) >= 1
        raise RuntimeError("token store exploded")

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        raise RuntimeError("token store exploded")


@pytest.mark.parametrize("revoke_first", [False, True], ids=["revoke-fails", "after-revoke"])
def test_failed_token_revocation_rolls_the_quarantine_back(
    ios: Session, app: Flask, revoke_first: bool
) -> None:
    core = _core(app)
    core.storage.add_credential_revoker(
        lambda conn: _FailingRevoker(conn, revoke_first=revoke_first)
    )
    statuses = ios.raw_check_in(DeviceTraits(jailbroken=True))
    assert any(code >= 500 for code in statuses), statuses  # the quarantining one failed
    # Nothing half done: not quarantined, no token revoked, the jailbroken posture not kept.
    assert ios.status() is DeviceStatus.ACTIVE
    assert ios.revoked_reasons() == {None}
    with core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(ios.device_id)
    assert stored is not None and stored.posture.jailbroken is False
    with core.storage.unit_of_work() as uow:
        audited = [e for e in uow.audit.recent(ios.device_id) if e.action == "credentials.revoked"]
    # (the enrolment check-in's first partial report blocked: nothing was live to revoke then)
    assert [
        e.detail for e in audited if e.detail["count"] or e.detail["reason"] != "posture_block"
    ] == []


def test_failed_status_change_rolls_the_revocation_back(ios: Session, app: Flask) -> None:
    """The reverse: the revocation ran, then the transaction failed: tokens stay live."""
    core = _core(app)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), core.storage.unit_of_work() as uow:
        from mdm_core.domain.device_lifecycle import change_status

        change_status(uow, ios.device_id, DeviceStatus.RETIRED, reason="test", at=_now())
        assert uow.credentials.revoke_for_device(ios.device_id, reason="x", at=_now()) == 0
        raise Boom
    assert ios.status() is DeviceStatus.ACTIVE
    assert ios.revoked_reasons() == {None}
    _all_alive(ios)
