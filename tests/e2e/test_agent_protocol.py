"""The reference agent against the real server over HTTP: enrollment, signed check-ins,
commands queued while offline, long-poll wake-up, the daemon loop, and login proofs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from mdm_core.agent.agent import Agent, agent_report
from mdm_core.agent.client import DeviceClient, ProtocolError
from mdm_core.agent.collector_linux import collect
from mdm_core.agent.commands import CommandOutcome
from mdm_core.agent.keys import DeviceKey
from mdm_core.agent.loopback import LOGIN_PROOF_PATH, LoopbackHelper
from mdm_core.device.commands import CommandStatus
from mdm_core.domain.errors import RevokedCertificate
from mdm_core.posture.model import Ownership, Platform
from tests.e2e.live_server import LiveServer, live_server

ADMIN = "admin:test"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as server:
        yield server


def _enrolled_agent(live: LiveServer, tmp_path: Path, serial: str = "E2E-LNX-1") -> Agent:
    secret = live.core.enrollment.register_serial(
        serial, Platform.LINUX, "alice@example.com", ADMIN
    ).enrollment_secret
    agent = Agent(tmp_path / f"agent-{serial}", server_url=live.url)
    agent.enroll(ownership="corporate", serial_number=serial, enrollment_secret=secret)
    return agent


def test_enroll_and_checkin_with_real_posture(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    state = agent.state_dir.load()
    assert state is not None and state.device_id == agent.device_id
    assert (agent.state_dir.key_path.stat().st_mode & 0o777) == 0o600
    with live.core.storage.unit_of_work() as uow:
        device = uow.devices.get(agent.device_id)
    assert device is not None
    assert device.user_id == "alice@example.com" and device.ownership is Ownership.CORPORATE

    result = agent.checkin()
    assert result.answer.next_checkin_s > 0
    assert "os_version" in result.answer.collect
    assert result.answer.compliance.get("state")
    here = collect()
    with live.core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(agent.device_id)
    assert stored is not None
    assert stored.posture.platform is Platform.LINUX
    assert stored.posture.os_version == here.os_version
    assert stored.posture.storage_encrypted == here.storage_encrypted
    assert stored.posture.agent_present is True
    # the collect list is remembered and honoured next time
    assert agent.state_dir.load().collect == result.answer.collect  # type: ignore[union-attr]
    assert set(agent.report()) <= {"platform", "collected_at", *result.answer.collect}


def test_command_queued_while_offline_is_delivered_at_next_checkin(
    live: LiveServer, tmp_path: Path
) -> None:
    agent = _enrolled_agent(live, tmp_path)
    agent.checkin()
    lock = live.core.commands.enqueue(agent.device_id, "lock", {}, created_by=ADMIN)
    wipe = live.core.commands.enqueue(agent.device_id, "wipe", {}, created_by=ADMIN)
    assert live.core.commands.get(lock.id).status is CommandStatus.QUEUED  # type: ignore[union-attr]

    result = agent.checkin()  # "comes back"
    got = [c["id"] for c, _ in result.executed]
    assert got == [wipe.id, lock.id]  # priority: wipe before lock
    for command_id in (lock.id, wipe.id):
        final = live.core.commands.get(command_id)
        assert final is not None and final.status is CommandStatus.ACKNOWLEDGED
        states = [t.to_status for t in live.core.commands.transitions(command_id)]
        assert states == [
            CommandStatus.QUEUED,
            CommandStatus.DELIVERED,
            CommandStatus.ACKNOWLEDGED,
        ]
    log = agent.state_dir.command_log()
    assert [e["command"]["type"] for e in log] == ["wipe", "lock"]
    assert all("no action on host" in e["detail"] for e in log)
    assert agent.checkin().executed == []  # nothing delivered twice


def test_long_poll_wakes_when_a_command_is_queued(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    answers: list[dict[str, object]] = []
    elapsed: list[float] = []

    def wait() -> None:
        t0 = time.monotonic()
        answers.append(agent.client.wait_for_commands(30))
        elapsed.append(time.monotonic() - t0)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # held open: nothing queued yet
    live.core.commands.enqueue(agent.device_id, "lock", {}, created_by=ADMIN)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert answers == [{"pending": 1, "ended": "command_queued", "timeout_s": 25}]
    assert elapsed[0] < 5


def test_long_poll_times_out_empty(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    t0 = time.monotonic()
    assert agent.client.wait_for_commands(1) == {"pending": 0, "ended": "timeout", "timeout_s": 1}
    assert 0.9 < time.monotonic() - t0 < 5


def test_run_loop_receives_and_acknowledges(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), kwargs={"max_wait_s": 2})
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with live.core.storage.unit_of_work() as uow:
                if uow.posture.latest(agent.device_id) is not None:
                    break
            time.sleep(0.05)
        cmd = live.core.commands.enqueue(agent.device_id, "lock", {}, created_by=ADMIN)
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            got = live.core.commands.get(cmd.id)
            status = got.status if got else None
            if status is CommandStatus.ACKNOWLEDGED:
                break
            time.sleep(0.05)
        assert status is CommandStatus.ACKNOWLEDGED
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()


def test_byod_enrollment_needs_the_notice_accepted(live: LiveServer, tmp_path: Path) -> None:
    token = live.core.enrollment.create_token(
        "bob@example.com", Ownership.BYOD, Platform.LINUX, timedelta(hours=1), ADMIN
    )
    refusing = Agent(tmp_path / "byod-no", server_url=live.url)
    seen: list[dict[str, object]] = []
    with pytest.raises(PermissionError):
        refusing.enroll(ownership="byod", token=token, accept_notice=lambda n: bool(seen.append(n)))
    assert seen and seen[0]["ownership"] == "byod" and seen[0]["cannot_see"]
    assert refusing.state_dir.load() is None

    agent = Agent(tmp_path / "byod-yes", server_url=live.url)
    agent.enroll(ownership="byod", token=token, accept_notice=lambda n: True)
    agent.checkin()
    with live.core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(agent.device_id)
    assert stored is not None
    assert stored.posture.hostname is None and stored.posture.serial_number is None


def test_used_token_and_unregistered_serial_are_refused(live: LiveServer, tmp_path: Path) -> None:
    client = DeviceClient(live.url, DeviceKey.generate())
    with pytest.raises(ProtocolError) as err:
        client.enroll(platform="linux", ownership="corporate", serial_number="NOT-REGISTERED")
    assert 400 <= err.value.status < 500 and err.value.error
    with pytest.raises(RuntimeError):
        client.checkin("agent", {})  # never enrolled: nothing to sign with


def test_replayed_and_tampered_requests_are_refused(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    body = b'{"format":"agent","report":{"os_version":"12"}}'
    url = live.url + "/mdm/v1/checkin"
    proof = agent.key.request_proof(agent.device_id, "POST", url, body)
    headers = {"Device-Proof": proof, "Content-Type": "application/json"}
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 401
    fresh = agent.key.request_proof(agent.device_id, "POST", url, body)
    tampered = httpx.post(
        url,
        content=body.replace(b"12", b"13"),
        headers={"Device-Proof": fresh, "Content-Type": "application/json"},
    )
    assert tampered.status_code == 401
    stranger = DeviceKey.generate().request_proof(agent.device_id, "POST", url, body)
    forged = httpx.post(
        url, content=body, headers={"Device-Proof": stranger, "Content-Type": "application/json"}
    )
    assert forged.status_code == 401
    with live.core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(agent.device_id)
    assert stored is not None and stored.posture.os_version == "12"  # refusals changed nothing


def test_loopback_login_proof_verifies_at_the_server(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    gateway = live.url
    helper = LoopbackHelper(
        agent.key,
        agent.device_id,
        gateway,
        posture=lambda: {"format": "agent", "report": agent_report(collect())},
    ).start()
    try:
        nonce = "n0nce-" + "x" * 20
        refused = httpx.get(
            helper.url + LOGIN_PROOF_PATH,
            params={"nonce": nonce, "aud": gateway},
            headers={"Origin": "https://evil.example.com"},
        )
        assert refused.status_code == 403
        resp = httpx.get(
            helper.url + LOGIN_PROOF_PATH,
            params={"nonce": nonce, "aud": gateway},
            headers={"Origin": gateway},
        )
        assert resp.status_code == 200
        proof = resp.json()["proof"]
    finally:
        helper.stop()
    verified = live.core.proofs.verify_login_proof(proof, audience=gateway, nonce=nonce)
    assert verified.device.device.id == agent.device_id


def test_certificate_renewal_when_due(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    before = agent.state_dir.load()
    assert before is not None
    assert agent.renew_if_due() is False  # a fresh 30-day certificate is not due
    assert agent.renew_if_due(within=timedelta(days=365)) is True
    after = agent.state_dir.load()
    assert after is not None and after.certificate != before.certificate
    new_cert = x509.load_pem_x509_certificate(after.certificate.encode())
    assert new_cert.public_key() == agent.key.private_key.public_key()
    assert live.core.ca.verify_device_certificate(after.certificate).device_id == agent.device_id
    with pytest.raises(RevokedCertificate):  # superseded
        live.core.ca.verify_device_certificate(before.certificate)
    assert agent.checkin().answer.next_checkin_s > 0  # the same key keeps working


def test_request_checkin_command_sends_fresh_posture(live: LiveServer, tmp_path: Path) -> None:
    agent = _enrolled_agent(live, tmp_path)
    agent.checkin()
    live.core.commands.enqueue(agent.device_id, "request_checkin", {}, created_by=ADMIN)
    result = agent.checkin()
    assert [c["type"] for c, _ in result.executed] == ["request_checkin"]
    with live.core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(agent.device_id)
    assert stored is not None and stored.seq == 3  # first, the one that got it, the answer


def test_a_command_the_agent_does_not_know_is_answered_error(
    live: LiveServer, tmp_path: Path
) -> None:
    agent = _enrolled_agent(live, tmp_path)
    agent.executor = lambda_executor = _Refuser()
    cmd = live.core.commands.enqueue(
        agent.device_id, "install_app", {"app_id": "x"}, created_by=ADMIN
    )
    agent.checkin()
    final = live.core.commands.get(cmd.id)
    assert final is not None and final.status is CommandStatus.ERROR
    assert final.error == "refused in test"
    assert lambda_executor.seen == ["install_app"]


class _Refuser:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def execute(self, command: dict[str, object]) -> CommandOutcome:
        self.seen.append(str(command["type"]))
        return CommandOutcome("error", "refused in test")
