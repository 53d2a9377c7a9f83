"""A device that stops checking in loses its access by itself, through ``posture serve``.

Per backend (the embedded default, and PostgreSQL + Redis): ``posture --config FILE serve``
with its default flags (granian, 2 workers, the sweep on by default), a policy directory whose
``max_posture_age`` is short (45 s) and a sweep every 2 s. The reference agent enrolls and
checks in, a browser logs in (SSO session, access + refresh tokens), then the agent goes
silent: with no request from anyone, the tokens become inactive at introspection, the refresh
is refused, the SSO session is revoked, ``compliance.changed`` (cause ``posture_stale``) and
``access.revoked`` (reason ``posture_stale``) are in the outbox exactly once (two workers, one
lease) and the live-credentials gauge reads 0. A fresh check-in lets the device in again.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mdm_core.storage.sql.tables import outbox
from posture_gateway.observability.live_credentials import (
    noncompliant_devices_with_live_credentials,
    silent_cutoff,
)
from posture_gateway.oidc.tables import gateway_sso_sessions
from tests.e2e.deployment import _stop
from tests.e2e.live_server import POLICY_DIR
from tests.e2e.test_sso_sessions_serve import (
    Browser,
    Stack,
    _introspect,
    _refresh,
    backend,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.slow]

MAX_AGE_S = 45


class SilentStack(Stack):
    """The SSO stack with short posture ages and a quick sweep."""

    def _write_config(self, backend: dict[str, str]) -> Path:  # noqa: F811 - the fixture name
        config = super()._write_config(backend)
        policies = self.tmp / "policies"
        shutil.copytree(POLICY_DIR, policies)
        for path in (policies / "compliance").glob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            path.write_text(
                re.sub(r"max_posture_age: \S+", f"max_posture_age: {MAX_AGE_S}s", text),
                encoding="utf-8",
            )
        text = config.read_text(encoding="utf-8").replace(
            f"policy_dir: {POLICY_DIR}", f"policy_dir: {policies}"
        )
        config.write_text(text + "stale_sweep:\n  interval: 2s\n", encoding="utf-8")
        return config


@pytest.fixture
def stack(tmp_path: Path, backend: dict[str, str]) -> Iterator[SilentStack]:  # noqa: F811
    s = SilentStack(tmp_path, backend)
    try:
        s.start_server()
        s.enroll()
        yield s
    finally:
        for process in reversed(s.processes):
            _stop(process)


def _rows(stack: Stack, device_id: str) -> list[Any]:
    core = stack.core()
    try:
        with core.database.engine.connect() as conn:
            return list(
                conn.execute(
                    select(outbox.c.type, outbox.c.payload)
                    .where(outbox.c.subject == device_id)
                    .order_by(outbox.c.id)
                ).all()
            )
    finally:
        core.close()


def test_silent_device_loses_its_sessions_and_tokens(stack: SilentStack) -> None:
    browser = Browser(stack)
    try:
        stack.check_in()  # fresh, right before the login
        tokens = browser.login_with_password("app-a")
        assert _introspect(stack, tokens["access_token"])["active"] is True
        # Silence: nobody calls anything; the sweep must notice by itself.
        deadline = time.monotonic() + MAX_AGE_S + 120  # generous: a slow, shared machine
        while time.monotonic() < deadline:
            if _introspect(stack, tokens["refresh_token"], "refresh_token") == {"active": False}:
                break
            time.sleep(1)
        assert _introspect(stack, tokens["refresh_token"], "refresh_token") == {"active": False}
        assert _introspect(stack, tokens["access_token"]) == {"active": False}
        assert _refresh(stack, "app-a", tokens["refresh_token"]).json()["error"] == "invalid_grant"
        again, _ = browser.authorize("app-a")
        assert 'name="password"' in again.text  # the SSO session is gone
        rows = _rows(stack, stack.device_id)
        stale = [
            r.type
            for r in rows
            if r.payload.get("cause") == "posture_stale"
            or r.payload.get("reason") == "posture_stale"
        ]
        assert stale == ["compliance.changed", "access.revoked"], rows
        revoked = [r for r in rows if r.payload.get("reason") == "posture_stale"][0]
        assert revoked.payload["sessions"] == 1
        core = stack.core()
        try:
            with core.database.engine.connect() as conn:
                live = conn.execute(
                    select(gateway_sso_sessions.c.id_hash).where(
                        gateway_sso_sessions.c.device_id == stack.device_id,
                        gateway_sso_sessions.c.revoked_at.is_(None),
                    )
                ).all()
            assert live == []
            cutoff = silent_cutoff(core.policies.current(), datetime.now(UTC))
            assert noncompliant_devices_with_live_credentials(core.database) == 0
            assert noncompliant_devices_with_live_credentials(core.database, None, cutoff) == 0
        finally:
            core.close()
        # A fresh check-in lets the device in again.
        stack.check_in()
        assert browser.login_with_password("app-a")["access_token"]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc
    finally:
        browser.close()
