"""``posture demo``: the end-to-end story on the embedded default, told and checked.

Starts the real server (gunicorn, a production WSGI server, in a subprocess) on an ephemeral
loopback port over a SQLite database in a temporary directory with the in-process bus, so
nothing needs installing beyond the package. Then, as Carol the admin, Alice with her company
laptop (the Linux reference agent, collecting this host's real posture) and Bob with his own
iPhone (a simulated device speaking the same protocol):

1. Carol registers the laptop's serial number; 2. the laptop enrolls itself with it;
3. Carol issues a BYOD enrollment token to Bob; 4. Bob's iPhone shows the privacy notice,
Bob accepts, the phone enrolls; 5. both check in, and the demo shows what the server kept
and what it dropped from Bob's phone, and why each failed check failed (one line each, with
the engine's "This device did not report: ..." for a value that was missing);
6. two sign-ins over HTTP through the gateway's real login pages
(:mod:`posture_gateway.demo.login`: authorize with PKCE and nonce, password, device proof
signed by the device key, code, token endpoint, ID token verified against ``/jwks.json``):
Bob's healthy phone gets a token with posture claims, Dave's rooted phone ends on the
remediation page with no code; 7. the laptop is offline and Carol locks it: the command waits,
queued; 8. the laptop comes back, receives the lock and acknowledges it; 9. the laptop's
encryption-off check-in quarantines it, a passing check-in alone does not release it, Carol
releases it (audited) and the next passing check-in lets Alice sign in (where this host's real
posture cannot pass, the demo says so and names the values it stands in for); 10. a signed
BambooHR webhook says Bob left (a forged one is refused first): his logins and tokens end, his
iPhone gets a selective wipe (work container and managed apps only), acknowledges it at its
next check-in, and the redelivered webhook changes nothing; 11. the record: every audit record
of the run with the compliance decisions and command states.

Every step asserts what it shows: if anything does not happen as told, the demo stops with
:class:`DemoFailure` and the command exits non-zero.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
from cryptography import x509
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from mdm_core.agent.agent import Agent
from mdm_core.agent.client import DeviceClient, ProtocolError, notice_profile_id
from mdm_core.agent.collector_linux import LinuxPosture, collect
from mdm_core.agent.keys import DeviceKey
from mdm_core.device.commands import CommandStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.posture.normalize import normalize
from mdm_core.runtime import MdmCore, build_core
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.sql.tables import audit_log, outbox
from posture_gateway.app import core_config
from posture_gateway.demo.login import DemoRelyingParty, LoginResult, write_oidc_files
from posture_gateway.hr.signature import sign as hr_sign
from posture_gateway.oidc.tables import oidc_codes
from posture_gateway.settings import SHIPPED_POLICY_DIR, Settings

__all__ = ["DemoFailure", "DemoServer", "run_demo", "demo_cmd"]

ADMIN = "admin:carol"
ALICE = "alice@example.com"
BOB = "bob@example.com"
DAVE = "dave@example.com"
LAPTOP_SERIAL = "DEMO-LNX-0001"
IPHONE_SERIAL = "F2LDEMO00042"
#: What Bob's phone sends that the BYOD privacy profile must not keep.
PERSONAL_FIELDS = ("installed_apps", "serial_number", "hostname")


class DemoFailure(Exception):
    """A step of the story did not happen as told."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _policy_dir() -> Path:
    """The shipped policy set (package data): the demo works from any directory."""
    return SHIPPED_POLICY_DIR


def _ts(at: datetime | None) -> str:
    return "—" if at is None else at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


@dataclass
class DemoServer:
    """``posture_gateway.app:create_app()`` under gunicorn, configured by environment."""

    settings: Settings
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 25.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
        env.update(
            POSTURE_DATA_DIR=str(self.settings.data_dir),
            POSTURE_PUBLIC_URL=self.settings.public_url,
            POSTURE_DEV_MODE="true",
            POSTURE_POLICY_DIR=str(self.settings.policy_dir),
        )
        env.update(self.extra_env)
        self.log_path = self.settings.data_dir / "server.log"
        log = self.log_path.open("wb")
        argv = [
            sys.executable, "-m", "gunicorn",
            "--workers", "1", "--worker-class", "gthread", "--threads", "8",
            "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
            "--graceful-timeout", "3",
            "posture_gateway.app:create_app()",
        ]  # fmt: skip
        # Fixed argv (this interpreter running gunicorn), no shell.
        self.proc = subprocess.Popen(  # noqa: S603
            argv, env=env, cwd=self.settings.data_dir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoFailure(f"the server exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise DemoFailure(f"the server was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Story:
    """What the steps share."""

    console: Console
    core: MdmCore
    server: DemoServer
    workdir: Path
    laptop: Agent | None = None
    laptop_id: str = ""
    laptop_secret: str = ""  # the serial's enrollment secret, as provisioning would hold it
    phone: DeviceClient | None = None
    phone_id: str = ""
    bob_token: str = ""
    lock_id: str = ""
    rp: DemoRelyingParty | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    #: Values the laptop's collector reports instead of this host's (empty: the real posture).
    laptop_overrides: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    hr_secret: str = ""  # the BambooHR webhook's private key of this run

    def collect_laptop(self) -> LinuxPosture:
        """This host's real posture, with the demo's stand-ins (if any) on top."""
        return replace(collect(), **self.laptop_overrides)

    def say(self, who: str, text: str) -> None:
        self.console.print(f"  [bold cyan]{who}[/] {text}")


# --- the steps ------------------------------------------------------------------------------


def step_register_serial(s: Story) -> None:
    registered = s.core.enrollment.register_serial(LAPTOP_SERIAL, Platform.LINUX, ALICE, ADMIN)
    reg = registered.registration
    check(reg.serial_number == LAPTOP_SERIAL and reg.user_id == ALICE, "serial not registered")
    s.laptop_secret = registered.enrollment_secret
    s.say(
        "Carol (admin)",
        f"registers serial [bold]{LAPTOP_SERIAL}[/] (linux) for {ALICE}, and provisions its "
        "enrollment secret (shown once) to the laptop.",
    )


def step_laptop_enrolls(s: Story) -> None:
    agent = Agent(s.workdir / "laptop-agent", server_url=s.server.url, collector=s.collect_laptop)
    try:  # the serial alone is an identifier, not a credential: refused
        agent.enroll(ownership="corporate", serial_number=LAPTOP_SERIAL)
    except ProtocolError as exc:
        s.facts["serial_alone"] = exc.error
    check(
        s.facts.get("serial_alone") == "invalid_enrollment_secret",
        "the serial alone enrolled a corporate device",
    )
    s.say("Laptop", "tries its serial without the secret: refused (invalid_enrollment_secret).")
    state = agent.enroll(
        ownership="corporate", serial_number=LAPTOP_SERIAL, enrollment_secret=s.laptop_secret
    )
    s.laptop, s.laptop_id = agent, state.device_id
    key_file = agent.state_dir.key_path
    check(oct(key_file.stat().st_mode & 0o777) == "0o600", "device key file is not 0600")
    cert = x509.load_pem_x509_certificate(state.certificate.encode())
    check(
        cert.public_key().public_numbers()  # type: ignore[union-attr]
        == agent.key.private_key.public_key().public_numbers(),
        "the certificate is not for the laptop's key",
    )
    with s.core.storage.unit_of_work() as uow:
        record = uow.devices.get(state.device_id)
    check(record is not None and record.user_id == ALICE, "laptop not bound to Alice")
    check(record is not None and record.ownership is Ownership.CORPORATE, "laptop not corporate")
    s.say(
        "Alice's laptop",
        f"generates a P-256 key ({key_file.name}, mode 0600), sends a CSR with its serial.",
    )
    s.say(
        "Server",
        f"issues device [bold]{state.device_id}[/], certificate serial "
        f"{cert.serial_number:x} valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC.",
    )


def step_byod_token(s: Story) -> None:
    s.bob_token = s.core.enrollment.create_token(
        BOB, Ownership.BYOD, Platform.IOS, timedelta(hours=1), ADMIN
    )
    check(len(s.bob_token) >= 32, "token too short")
    s.say(
        "Carol (admin)",
        f"issues a single-use BYOD enrollment token to {BOB} "
        f"([dim]{s.bob_token[:6]}… shown once; the server keeps only its SHA-256[/]).",
    )


def step_bob_enrolls(s: Story) -> None:
    phone = DeviceClient(s.server.url, DeviceKey.generate())
    notice = phone.privacy_notice("byod")
    profile = notice_profile_id(notice)
    check(bool(notice.get("cannot_see")), "the privacy notice says nothing about what is not seen")
    table = Table.grid(padding=(0, 3))
    table.add_column(style="green")
    table.add_column(style="red")
    can, cannot = list(notice.get("can_see") or []), list(notice.get("cannot_see") or [])
    table.add_row("[bold]Your organisation can see[/]", "[bold]It cannot see[/]")
    for i in range(max(len(can), len(cannot))):
        table.add_row(
            f"• {can[i]}" if i < len(can) else "", f"• {cannot[i]}" if i < len(cannot) else ""
        )
    s.console.print(Panel(table, title=f"Bob's iPhone shows the privacy notice ({profile})"))
    s.say("Bob", "reads it and taps Accept.")
    enrolled = phone.enroll(
        platform="ios",
        ownership="byod",
        token=s.bob_token,
        privacy_notice_accepted=profile,
        common_name=IPHONE_SERIAL,
    )
    s.phone, s.phone_id = phone, enrolled.device_id
    with s.core.storage.unit_of_work() as uow:
        record = uow.devices.get(enrolled.device_id)
    check(record is not None and record.user_id == BOB, "phone not bound to Bob")
    check(record is not None and record.ownership is Ownership.BYOD, "phone not BYOD")
    again = DeviceClient(s.server.url, DeviceKey.generate())
    try:
        again.enroll(
            platform="ios", ownership="byod", token=s.bob_token, privacy_notice_accepted=profile
        )
    except Exception as exc:  # the refusal is the point
        s.facts["token_reuse"] = str(exc)
    finally:
        again.close()
    check("token_reuse" in s.facts, "a used enrollment token was accepted a second time")
    s.say("Server", f"enrolls device [bold]{enrolled.device_id}[/] (BYOD, {BOB}).")
    s.say("Attacker", f"replays Bob's token: refused ([dim]{s.facts['token_reuse']}[/]).")


def step_checkins(s: Story) -> None:
    assert s.laptop is not None and s.phone is not None
    laptop = s.laptop.checkin()
    check(laptop.answer.next_checkin_s > 0, "laptop check-in answer has no next check-in")
    sent = s.laptop.report()
    table = Table(title="Alice's laptop reports this host's real posture", show_lines=False)
    table.add_column("field")
    table.add_column("value")
    for name in (
        "os_version",
        "os_build",
        "storage_encrypted",
        "firewall_enabled",
        "screen_lock_enabled",
        "secure_boot",
        "agent_version",
    ):
        value = sent.get(name)
        table.add_row(name, "[dim]cannot tell (not sent)[/]" if value is None else str(value))
    s.console.print(table)
    s.say("Server", f"answers the laptop: compliance {_compliance(laptop.answer.compliance)}.")
    _bullets(s, laptop.answer.compliance)

    now = datetime.now(UTC)
    reports = native_reports("ios", IPHONE_SERIAL, "byod", DeviceTraits(), now)
    fmt, report = reports[0]
    answer = s.phone.checkin(fmt, report)
    sent_posture = normalize(report, fmt, platform=Platform.IOS, received_at=now)
    with s.core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(s.phone_id)
    check(stored is not None, "Bob's posture was not stored")
    assert stored is not None
    kept, dropped = Table(title="Bob's iPhone (BYOD): what the server kept and dropped"), []
    kept.add_column("field")
    kept.add_column("sent")
    kept.add_column("kept")
    for name, value in sent_posture.model_dump(exclude={"platform", "collected_at"}).items():
        if value in (None, (), []):
            continue
        stored_value = getattr(stored.posture, name)
        is_kept = stored_value not in (None, (), [])
        if not is_kept:
            dropped.append(name)
        kept.add_row(
            name,
            _short(value),
            "[green]kept[/]" if is_kept else "[red]dropped before storage[/]",
        )
    s.console.print(kept)
    for name in PERSONAL_FIELDS:
        check(name in dropped, f"BYOD {name} was stored; the privacy profile must drop it")
    check(stored.posture.os_version == report["OSVersion"], "Bob's OS version was not kept")
    check("installed_apps" not in answer.collect, "the server asks BYOD devices for all apps")
    s.say("Server", f"answers Bob's phone: compliance {_compliance(answer.compliance)}.")
    _bullets(s, answer.compliance)
    s.say(
        "Bob's iPhone",
        "[dim]Apple's MDM report says a passcode is set but not its length nor the jailbreak "
        "state: a value the device did not report fails closed. The Posture app reports them "
        "next.[/]",
    )


def step_access_decisions(s: Story) -> None:
    """Two sign-ins over HTTP through the gateway's login pages: Bob's phone, Dave's rooted one."""
    assert s.phone is not None and s.rp is not None
    now = datetime.now(UTC)
    # The Posture app on Bob's phone reports what Apple's MDM cannot see (jailbreak state and
    # the passcode's length).
    fmt, report = native_reports("ios", IPHONE_SERIAL, "byod", DeviceTraits(), now)[1]
    answer = s.phone.checkin(fmt, report)
    s.say(
        "Bob's iPhone",
        f"the Posture app reports what MDM cannot see: {_compliance(answer.compliance)}.",
    )
    check(answer.compliance.get("outcome") != "block", "Bob's phone still fails after the app")

    token = s.core.enrollment.create_token(
        DAVE, Ownership.CORPORATE, Platform.ANDROID, timedelta(hours=1), ADMIN
    )
    rooted = DeviceClient(s.server.url, DeviceKey.generate())
    try:
        dave = rooted.enroll(platform="android", ownership="corporate", token=token)
        fmt, report = native_reports(
            "android", "DEMO-AND-0666", "corporate", DeviceTraits(jailbroken=True), now
        )[0]
        answer = rooted.checkin(fmt, report)
    finally:
        rooted.close()
    s.say("Dave's Android", f"(rooted) enrolls and checks in: {_compliance(answer.compliance)}.")
    _bullets(s, answer.compliance)
    with s.core.storage.unit_of_work() as uow:
        record = uow.devices.get(dave.device_id)
    check(
        record is not None and record.status.value == "quarantined", "rooted phone not quarantined"
    )
    s.facts["dave_device"] = dave.device_id

    s.say(
        "Expense app",
        f"(OIDC client [bold]expenses[/]) sends Bob to {s.server.url}/oauth/authorize "
        "(code flow, PKCE S256, state, nonce).",
    )
    codes_before = _codes_issued(s)
    bob = _login(s, "bob", s.phone.key, s.phone_id)
    check(bob.code_issued and bob.outcome != "block", "Bob's healthy phone was refused")
    claims = bob.claims
    check(claims.get("sub") == BOB, "the ID token is not for Bob")
    check(claims.get("device_id") == s.phone_id, "the ID token does not name Bob's phone")
    check(claims.get("posture_outcome") in ("allow", "warn"), "no posture outcome in the token")
    check(claims.get("compliance_state") == "compliant", "the token does not say compliant")
    s.facts["bob_claims"] = claims
    s.say(
        "Bob",
        "types his password, the device-check page asks for a login proof, his phone's key "
        "signs it (audience + the page's nonce); the gateway redirects to the app with a code.",
    )
    s.say(
        "Expense app",
        "redeems the code at /oauth/token (client secret + PKCE verifier): "
        "ID token verified against /jwks.json (pyjwt), nonce checked.",
    )
    table = Table(title="Bob's ID token: the posture claims")
    table.add_column("claim")
    table.add_column("value")
    for name in ("iss", "aud", "sub", "acr", "device_id", "posture_outcome", "compliance_state",
                 "posture_policy_ids", "posture_age_s"):  # fmt: skip
        if name in claims:
            table.add_row(name, _short(claims[name]))
    s.console.print(table)

    dave_login = _login(s, "dave", rooted.key, dave.device_id)
    check(dave_login.outcome == "block", "the rooted phone was let in")
    check(not dave_login.code_issued, "the rooted phone got an authorization code")
    check(_codes_issued(s) == codes_before + 1, "a code was issued for the rooted phone")
    check(bool(dave_login.reasons), "the remediation page gives no reasons")
    check(
        any(code == "jailbroken" or "rooted" in msg for code, msg in dave_login.reasons),
        "the remediation page does not say the phone is rooted",
    )
    s.facts["dave_login"] = dave_login
    s.say(
        "Dave",
        f"signs in the same way: the gateway answers HTTP {dave_login.status} with the "
        "remediation page and [bold]no code[/]. The page says:",
    )
    for code, message in dave_login.reasons:
        s.console.print(f"      • {message} [dim]({code})[/]")
    for step in dave_login.steps:
        s.console.print(f"      → [italic]{step}[/]")


def _login(s: Story, username: str, key: DeviceKey, device_id: str) -> LoginResult:
    assert s.rp is not None
    return s.rp.login(
        username, s.passwords[username], lambda aud, nonce: key.login_proof(device_id, aud, nonce)
    )


def _codes_issued(s: Story) -> int:
    from sqlalchemy import func, select

    with s.core.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(oidc_codes)).scalar_one())


def _bullets(s: Story, compliance: dict[str, Any]) -> None:
    """Each failed check on its own line, with its message (why, not only which rule)."""
    for r in compliance.get("reasons") or []:
        s.console.print(f"      • {r.get('message')} [dim]({r.get('rule_id') or r.get('code')})[/]")


def step_lock_while_offline(s: Story) -> None:
    s.say("Alice's laptop", "goes offline (lid closed: its agent is not running).")
    cmd = s.core.commands.enqueue(
        s.laptop_id,
        "lock",
        {"message": "Locked by IT: call the service desk"},
        created_by=ADMIN,
    )
    s.lock_id = cmd.id
    got = s.core.commands.get(cmd.id)
    check(got is not None and got.status is CommandStatus.QUEUED, "the lock is not queued")
    check(got is not None and got.delivered_at is None, "the lock was delivered while offline")
    s.say(
        "Carol (admin)", f"locks the laptop: command [bold]{cmd.id[:8]}…[/] is [yellow]queued[/]."
    )
    s.console.print(_command_table(s, "The lock waits for the laptop"))


def step_laptop_returns(s: Story) -> None:
    assert s.laptop is not None
    time.sleep(0.2)  # so the timestamps show the gap
    s.say("Alice's laptop", "comes back online and checks in.")
    result = s.laptop.checkin()
    locks = [c for c, _ in result.executed if c.get("id") == s.lock_id]
    check(len(locks) == 1 and locks[0].get("type") == "lock", "the lock was not delivered")
    outcome = next(o for c, o in result.executed if c.get("id") == s.lock_id)
    check(outcome.status == "acknowledged", "the agent did not acknowledge the lock")
    logged = [e for e in s.laptop.state_dir.command_log() if e["command"].get("id") == s.lock_id]
    check(len(logged) == 1, "the agent did not record the lock")
    got = s.core.commands.get(s.lock_id)
    check(got is not None and got.status is CommandStatus.ACKNOWLEDGED, "lock not acknowledged")
    states = [t.to_status for t in s.core.commands.transitions(s.lock_id)]
    check(
        states == [CommandStatus.QUEUED, CommandStatus.DELIVERED, CommandStatus.ACKNOWLEDGED],
        f"unexpected command history {states}",
    )
    s.say(
        "Alice's laptop",
        f"receives the lock and acknowledges it ([dim]{outcome.detail}: the reference agent "
        "records commands and never locks or wipes its host[/]).",
    )
    s.console.print(_command_table(s, "The lock, delivered and acknowledged"))


#: What a passing Linux check-in needs; the demo stands in for Alice fixing what this host lacks.
HEALTHY_LAPTOP: dict[str, Any] = {
    "storage_encrypted": True,
    "screen_lock_enabled": True,
    "screen_lock_timeout_s": 300,
}


def _laptop_status(s: Story) -> str:
    with s.core.storage.unit_of_work() as uow:
        record = uow.devices.get(s.laptop_id)
    assert record is not None
    return record.status.value


def step_laptop_quarantine(s: Story) -> None:
    """The laptop's encryption-off check-in quarantines it; only an admin release lets it out."""
    assert s.laptop is not None
    real = collect()
    before = _laptop_status(s)
    s.laptop_overrides = {"storage_encrypted": False}
    origin = (
        "this host's real value"
        if real.storage_encrypted is False
        else f"the demo overrides this host's value ({real.storage_encrypted})"
    )
    if before == "quarantined":
        s.say(
            "Server",
            "Alice's laptop has been quarantined since its first check-in on this host's real "
            "posture (step 5: a critical check failed).",
        )
    result = s.laptop.checkin()
    s.say(
        "Alice's laptop",
        f"checks in{' again' if before == 'quarantined' else ''} with disk encryption off "
        f"([dim]{origin}[/]): {_compliance(result.answer.compliance)}.",
    )
    _bullets(s, result.answer.compliance)
    check(_laptop_status(s) == "quarantined", "the unencrypted laptop is not quarantined")
    s.say("Server", "the device is [bold red]quarantined[/] (a critical check failed).")

    missing = {k: v for k, v in HEALTHY_LAPTOP.items() if getattr(real, k) != v}
    s.laptop_overrides = dict(HEALTHY_LAPTOP)
    if missing:
        s.say(
            "Demo",
            "[yellow]this host's real posture cannot pass[/] ("
            + ", ".join(f"{k}={getattr(real, k)}" for k in missing)
            + "): from here the laptop's collector reports this host's posture with "
            + ", ".join(f"{k}={v}" for k, v in missing.items())
            + ", standing in for Alice fixing them.",
        )
    result = s.laptop.checkin()
    failing = [
        r for r in result.answer.compliance.get("reasons") or [] if r.get("rule_id") is not None
    ]
    check(not failing, f"the fixed laptop still fails: {failing}")
    s.say(
        "Alice's laptop",
        f"is fixed and checks in: every check passes, yet {_compliance(result.answer.compliance)}",
    )
    _bullets(s, result.answer.compliance)
    check(_laptop_status(s) == "quarantined", "a healthy check-in alone released the laptop")
    s.say("Server", "a passing check-in alone does [bold]not[/] release it: still quarantined.")
    blocked = _login(s, "alice", s.laptop.key, s.laptop_id)
    check(blocked.outcome == "block" and not blocked.code_issued, "quarantined laptop let in")
    check(
        any(code == "device_quarantined" for code, _ in blocked.reasons),
        "the remediation page does not say the laptop is quarantined",
    )
    s.say("Alice", f"signs in from it: HTTP {blocked.status}, no code. The page says:")
    for code, message in blocked.reasons:
        s.console.print(f"      • {message} [dim]({code})[/]")

    released = s.core.quarantine.release(
        s.laptop_id, actor=ADMIN, reason="disk re-encrypted; verified with Alice (ticket IT-1234)"
    )
    check(released.status.value == "pending_verification", "the release did not take")
    s.say(
        "Carol (admin)",
        "releases it ([dim]core.quarantine.release, audited as device.release[/]): "
        "now [bold]pending_verification[/] — the release vouches for the device, not its posture.",
    )
    result = s.laptop.checkin()
    check(_laptop_status(s) == "active", "the passing check-in after release did not activate it")
    s.say("Alice's laptop", f"checks in again: {_compliance(result.answer.compliance)} → active.")
    alice = _login(s, "alice", s.laptop.key, s.laptop_id)
    check(alice.code_issued and alice.claims.get("sub") == ALICE, "Alice's laptop is refused")
    check(alice.claims.get("device_id") == s.laptop_id, "Alice's token does not name the laptop")
    s.facts["alice_claims"] = alice.claims
    s.say(
        "Alice",
        f"signs in over HTTP: code redeemed, ID token verified, posture_outcome="
        f"{alice.claims.get('posture_outcome')}, compliance_state="
        f"{alice.claims.get('compliance_state')}.",
    )


#: What the story must have left in the audit trail: action -> (at least) how many records.
EXPECTED_AUDIT: dict[str, int] = {
    "enrollment.serial_registered": 1,
    "enrollment.refused": 1,
    "enrollment.token_created": 2,
    "device.enroll": 3,
    "access.decision": 4,
    "device.release": 1,
}


#: Events of the run shown in the record next to the audit log: the compliance decisions of
#: every check-in and every state of every command (the other events are counted).
TIMELINE_EVENTS = ("compliance.changed", "command.state_changed")


def step_hr_offboards_bob(s: Story) -> None:
    """A signed BambooHR webhook says Bob left: his phone's selective wipe is acknowledged."""
    assert s.phone is not None
    employee = {
        "id": "1042", "action": "Updated", "changedFields": ["Status"],
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "fields": {"status": "Inactive", "workEmail": BOB, "firstName": "Bob"},
    }  # fmt: skip
    body = json.dumps({"employees": [employee]}).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-BambooHR-Timestamp": stamp,
        "X-BambooHR-Signature": hr_sign(s.hr_secret.encode(), body, stamp),
    }
    forged = httpx.post(
        s.server.url + "/hr/v1/webhooks/bamboohr",
        content=body,
        headers={**headers, "X-BambooHR-Signature": "0" * 64},
        timeout=10,
    )
    check(forged.status_code == 401, f"a forged HR webhook got {forged.status_code}")
    s.say("Attacker", "posts the same body with a forged signature: 401 invalid_signature.")
    answer = httpx.post(
        s.server.url + "/hr/v1/webhooks/bamboohr", content=body, headers=headers, timeout=15
    )
    check(answer.status_code == 200, f"the HR webhook got {answer.status_code}: {answer.text}")
    (event,) = answer.json()["events"]
    check(event["outcome"] == "offboarding_started", f"HR event outcome {event['outcome']}")
    s.say(
        "BambooHR",
        f"posts a signed webhook (HMAC-SHA256 over body + timestamp): employee 1042, "
        f"{BOB}, status Inactive -> [bold]{event['outcome']}[/] (job {event['job_id'][:8]}…).",
    )
    wipes = [c for c in s.core.commands.for_device(s.phone_id) if c.type.value == "selective_wipe"]
    check(len(wipes) == 1, "no selective wipe was queued for Bob's phone")
    wipe = wipes[0]
    check(wipe.payload.get("work_container") is True, "the selective wipe skips the container")
    check(
        not [c for c in s.core.commands.for_device(s.phone_id) if c.type.value == "wipe"],
        "a full wipe was queued for a BYOD phone",
    )
    named = ", ".join(wipe.payload.get("apps", [])) or "none reported"
    s.say(
        "Server",
        "blocks Bob's logins, revokes his sessions and tokens, and queues a "
        f"[bold]selective wipe[/] for his iPhone: the work container and managed apps ({named}); "
        "never a full wipe of a personal phone.",
    )
    now = datetime.now(UTC)
    fmt, report = native_reports("ios", IPHONE_SERIAL, "byod", DeviceTraits(), now)[0]
    got = s.phone.checkin(fmt, report)
    delivered = [c for c in got.commands if c.get("id") == wipe.id]
    check(len(delivered) == 1, "the selective wipe was not delivered at the next check-in")
    s.phone.post_result(wipe.id, "acknowledged", "work container and managed apps removed")
    done = s.core.commands.get(wipe.id)
    check(done is not None and done.status is CommandStatus.ACKNOWLEDGED, "wipe not acknowledged")
    s.say(
        "Bob's iPhone",
        "checks in, receives the selective wipe, removes the work data and acknowledges it; "
        "his photos and messages stay.",
    )
    again = httpx.post(
        s.server.url + "/hr/v1/webhooks/bamboohr", content=body, headers=headers, timeout=15
    )
    check(again.status_code == 200 and again.json()["replayed"] is True, "redelivery not replayed")
    s.say("BambooHR", "redelivers the same webhook: answered from the record, nothing repeats.")


def _record_rows(s: Story) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every audit record of the run plus its decision and command events, in time order;
    and the count of every event type (the demo's database is its own: all of it is the run)."""
    from sqlalchemy import func, select

    with s.core.database.engine.connect() as conn:
        audit = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
        events = (
            conn.execute(
                select(outbox).where(outbox.c.type.in_(TIMELINE_EVENTS)).order_by(outbox.c.id)
            )
            .mappings()
            .all()
        )
        counted = conn.execute(select(outbox.c.type, func.count()).group_by(outbox.c.type)).all()
    rows: list[dict[str, Any]] = [
        {"kind": "audit", "at": r["at"], "actor": r["actor"], "what": r["action"],
         "subject": r["subject"], "outcome": r["outcome"], "detail": r["detail"]}
        for r in audit
    ]  # fmt: skip
    for e in events:
        payload = dict(e["payload"])
        actor = "server (check-in)"
        if e["type"] == "compliance.changed":
            outcome = f"{payload.get('state')} → {payload.get('outcome')}"
        else:
            outcome = f"{payload.get('command_type')}: {payload.get('to')}"
            actor = _event_actor(s, payload)
        rows.append(
            {"kind": "event", "at": e["occurred_at"], "actor": actor,
             "what": e["type"],
             "subject": e["subject"], "outcome": outcome, "detail": payload}
        )  # fmt: skip

    def when(row: dict[str, Any]) -> datetime:
        at: datetime = row["at"]
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    rows.sort(key=when)
    return rows, {str(t): int(n) for t, n in counted}


def _event_actor(s: Story, payload: dict[str, Any]) -> str:
    """Who moved a command: its creator queued it, the server delivered it, the device answered."""
    to = payload.get("to")
    if to == "queued":
        command = s.core.commands.get(str(payload.get("command_id")))
        return command.created_by if command is not None else "?"
    if to == "delivered":
        return "server"
    return f"device:{payload.get('device_id')}" if to else "server"


def step_audit(s: Story) -> None:
    rows, event_counts = _record_rows(s)
    audit = [r for r in rows if r["kind"] == "audit"]
    check(bool(audit), "nothing was audited")
    names = {
        s.laptop_id: "Alice's laptop",
        s.phone_id: "Bob's iPhone",
        str(s.facts.get("dave_device", "")): "Dave's Android",
        s.lock_id: "the lock",
    }
    table = Table(
        title=f"The record: all {len(audit)} audit records of the run, with the compliance "
        "decisions and command states (events)"
    )
    for col in ("time (UTC)", "kind", "actor", "action / event", "subject", "outcome"):
        table.add_column(col)
    for r in rows:
        actor = str(r["actor"])
        for device_id, name in names.items():
            if device_id and device_id in actor:
                actor = f"{actor.split(':', 1)[0]}:{name}"
        subject = str(r["subject"])
        table.add_row(
            _ts(r["at"]),
            r["kind"],
            actor,
            r["what"],
            names.get(subject, subject) if subject else "—",
            str(r["outcome"]),
            style="dim" if r["kind"] == "event" else None,
        )
    s.console.print(table)
    counts: dict[str, int] = {}
    for r in audit:
        counts[r["what"]] = counts.get(r["what"], 0) + 1
    summary = Table(title="By kind")
    summary.add_column("audit action / event type")
    summary.add_column("records", justify="right")
    for action, n in sorted(counts.items()):
        summary.add_row(action, str(n))
    for event, n in sorted(event_counts.items()):
        summary.add_row(f"[dim]event[/] {event}", str(n))
    s.console.print(summary)
    for action, at_least in EXPECTED_AUDIT.items():
        check(counts.get(action, 0) >= at_least, f"the audit has {counts.get(action, 0)} {action}")
    decisions = {(r["subject"], r["outcome"]) for r in audit if r["what"] == "access.decision"}
    for subject, outcome in (
        (s.phone_id, "allow"),
        (str(s.facts.get("dave_device")), "block"),
        (s.laptop_id, "block"),
        (s.laptop_id, "allow"),
    ):
        check((subject, outcome) in decisions, f"no audited {outcome} decision for {subject}")
    states = [str(r["outcome"]) for r in rows if r["what"] == "command.state_changed"]
    lock_states = [x for x in states if x.startswith("lock:")]
    check(
        lock_states == ["lock: queued", "lock: delivered", "lock: acknowledged"],
        f"the record does not show the lock's states: {lock_states}",
    )
    wipe_states = [x for x in states if x.startswith("selective_wipe:")]
    check(
        wipe_states
        == ["selective_wipe: queued", "selective_wipe: delivered", "selective_wipe: acknowledged"],
        f"the record does not show the selective wipe's states: {wipe_states}",
    )
    compliance = [r for r in rows if r["what"] == "compliance.changed"]
    check(
        any("quarantined" in str(r["outcome"]) for r in compliance),
        "the record does not show the quarantine decision",
    )
    s.facts["audit_counts"] = counts
    s.facts["event_counts"] = event_counts


STEPS: list[tuple[str, Callable[[Story], None]]] = [
    ("Carol registers a company laptop", step_register_serial),
    ("The laptop enrolls itself (registered serial)", step_laptop_enrolls),
    ("Carol invites Bob to enroll his own phone", step_byod_token),
    ("Bob's iPhone: privacy notice, consent, enrollment", step_bob_enrolls),
    ("Both devices check in", step_checkins),
    ("Access: a compliant device vs a rooted one", step_access_decisions),
    ("The laptop is offline; Carol locks it", step_lock_while_offline),
    ("The laptop comes back", step_laptop_returns),
    ("Alice's laptop: quarantine, fix, release", step_laptop_quarantine),
    ("HR says Bob left: offboarding and a selective wipe", step_hr_offboards_bob),
    ("The record", step_audit),
]


# --- helpers --------------------------------------------------------------------------------


def _compliance(data: dict[str, Any]) -> str:
    if not data:
        return "[dim]not reported[/]"
    state, outcome = data.get("state", "?"), data.get("outcome", "?")
    reasons = ", ".join(
        str(r.get("rule_id") or r.get("code"))
        for r in data.get("reasons") or []
        if r.get("rule_id") or r.get("code")
    )
    return f"[bold]{state}[/] → {outcome}" + (f" ([dim]{reasons}[/])" if reasons else "")


def _short(value: Any) -> str:
    text = str(value)
    if isinstance(value, tuple | list):
        text = ", ".join(str(v.get("app_id", v)) if isinstance(v, dict) else str(v) for v in value)
    return text if len(text) <= 60 else text[:57] + "…"


def _command_table(s: Story, title: str) -> Table:
    table = Table(title=title)
    for col in ("time (UTC)", "from", "to", "detail"):
        table.add_column(col)
    for t in s.core.commands.transitions(s.lock_id):
        table.add_row(
            _ts(t.at),
            t.from_status.value if t.from_status else "—",
            t.to_status.value,
            t.detail or "",
        )
    return table


@contextmanager
def _environment(keep: bool) -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="posture-demo-"))
    try:
        yield workdir
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_demo(console: Console, *, keep: bool = False) -> float:
    """Tell the story; returns the seconds it took. Raises :class:`DemoFailure`."""
    started = time.monotonic()
    with _environment(keep) as workdir:
        port = _free_port()
        settings = Settings(
            data_dir=workdir / "data",
            public_url=f"http://127.0.0.1:{port}",
            policy_dir=_policy_dir(),
            dev_mode=True,
        )
        settings.data_dir.mkdir(parents=True)
        core = build_core(core_config(settings))  # migrates and creates the CA first
        redirect_uri = f"http://127.0.0.1:{_free_port()}/oidc/callback"  # never fetched
        clients, users, client_secret, passwords = write_oidc_files(
            workdir, redirect_uri, {ALICE: "alice", BOB: "bob", DAVE: "dave"}
        )
        hr_secret = secrets.token_urlsafe(32)  # the BambooHR webhook's key, this run only
        server = DemoServer(
            settings,
            port,
            extra_env={
                "POSTURE_OIDC__CLIENTS_FILE": str(clients),
                "POSTURE_OIDC__USERS_FILE": str(users),
                "POSTURE_HR__BAMBOOHR__SECRET": hr_secret,
            },
        )
        console.print(
            Panel(
                f"server   {server.url} (gunicorn, 1 worker x 8 threads)\n"
                f"store    SQLite {settings.effective_database_url.removeprefix('sqlite:///')}\n"
                "bus      in-process\n"
                f"policies {settings.policy_dir}",
                title="Posture Gateway demo: the embedded default",
            )
        )
        story = Story(
            console=console, core=core, server=server, workdir=workdir, hr_secret=hr_secret
        )
        story.rp = DemoRelyingParty(server.url, redirect_uri, client_secret)
        story.passwords = passwords
        try:
            server.start()
            for number, (title, step) in enumerate(STEPS, start=1):
                console.rule(f"[bold]{number}. {title}")
                step(story)
        except DemoFailure:
            tail = server.log_tail()
            if tail:
                console.print(Panel(tail, title="server log (tail)"))
            raise
        finally:
            for client in (story.laptop, story.phone):
                if client is not None:
                    client.close()
            server.stop()
            core.close()
        if keep:
            console.print(f"kept {workdir}")
    return time.monotonic() - started


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary data directory.")
def demo_cmd(keep: bool) -> None:
    """Run the end-to-end story on the embedded default (SQLite, in-process bus)."""
    console = Console()
    try:
        elapsed = run_demo(console, keep=keep)
    except DemoFailure as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        raise SystemExit(1) from exc
    except Exception as exc:
        console.print(f"[bold red]demo failed:[/] {type(exc).__name__}: {exc}")
        raise SystemExit(1) from exc
    console.print(f"[bold green]every step happened as told[/] ({elapsed:.1f}s)")
