"""The reference agent's behaviour: enroll, check in, execute commands, wait for more.

:class:`Agent` ties the state directory, the device key, the protocol client, the Linux
collector and the command executor together. ``run()`` is the daemon loop: check in, carry
out the commands, post their results, then long-poll until the next check-in is due or a
command is queued, whichever comes first.

The report it sends is the ``agent`` format: a flat object whose keys are the names of the
normalised posture fields (``os_version``, ``storage_encrypted``, ...) plus ``platform`` and
``collected_at``; values it could not establish are omitted. When the server's last answer
listed the fields it wants (``collect``, from the privacy profile), only those are sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from mdm_core.agent.client import CheckinAnswer, DeviceClient, ProtocolError, notice_profile_id
from mdm_core.agent.collector_linux import LinuxPosture, collect
from mdm_core.agent.commands import CommandExecutor, CommandOutcome, RecordingExecutor
from mdm_core.agent.state import AgentState, StateDir

__all__ = ["Agent", "CheckinResult", "agent_report", "NotEnrolled"]

log = logging.getLogger(__name__)

#: Renew the device certificate when it expires within this (the server's default window).
RENEW_BEFORE = timedelta(days=7)

#: The longest long-poll the server holds (``GET /mdm/v1/commands/wait``, at most 60 s).
MAX_WAIT_S = 60

REPORT_FIELDS = (
    "os_version",
    "os_build",
    "storage_encrypted",
    "firewall_enabled",
    "screen_lock_enabled",
    "screen_lock_timeout_s",
    "secure_boot",
    "agent_version",
    "hostname",
    "model",
    "serial_number",
)


class NotEnrolled(Exception):
    """The agent has no enrollment in its state directory."""


def agent_report(
    posture: LinuxPosture,
    collect_only: list[str] | None = None,
    installed: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The ``agent``-format report for ``posture`` (unknown values omitted); ``installed``
    (the state directory's installed set) is reported as ``managed_apps`` /
    ``managed_certificates``."""
    data = posture.as_dict()
    report: dict[str, Any] = {"platform": "linux", "collected_at": data["collected_at"]}
    wanted = set(collect_only) if collect_only else None
    for name in REPORT_FIELDS:
        if wanted is not None and name not in wanted:
            continue
        value = data.get(name)
        if value is not None:
            report[name] = value
    if wanted is None or "agent_present" in wanted:
        report["agent_present"] = True
    if installed is not None:
        if wanted is None or "managed_apps" in wanted:
            report["managed_apps"] = [{"app_id": a} for a in installed.get("apps", [])]
        if wanted is None or "managed_certificates" in wanted:
            report["managed_certificates"] = [
                {"name": c} for c in installed.get("certificates", [])
            ]
    return report


@dataclass(frozen=True, slots=True)
class CheckinResult:
    answer: CheckinAnswer
    executed: list[tuple[dict[str, Any], CommandOutcome]]


class Agent:
    """One enrolled (or enrollable) device on this host."""

    def __init__(
        self,
        state_dir: Path,
        *,
        server_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        collector: Callable[[], LinuxPosture] = collect,
        executor: CommandExecutor | None = None,
    ) -> None:
        self.state_dir = StateDir(state_dir)
        self.state = self.state_dir.load()
        url = server_url or (self.state.server_url if self.state else None)
        if url is None:
            raise NotEnrolled("no server URL: pass one, or enroll first")
        self.key = self.state_dir.key()
        self.client = DeviceClient(
            url,
            self.key,
            device_id=self.state.device_id if self.state else None,
            transport=transport,
        )
        self.collector = collector
        self.executor = executor or RecordingExecutor(self.state_dir)

    def close(self) -> None:
        self.client.close()

    @property
    def device_id(self) -> str:
        if self.state is None:
            raise NotEnrolled("not enrolled")
        return self.state.device_id

    def enroll(
        self,
        *,
        ownership: str,
        token: str | None = None,
        serial_number: str | None = None,
        accept_notice: Callable[[dict[str, Any]], bool] | None = None,
        enrollment_secret: str | None = None,
    ) -> AgentState:
        """Enroll this host as a ``linux`` device; BYOD shows the privacy notice first.

        Enrollment by serial (no ``token``) sends the serial's ``enrollment_secret`` from the
        admin's registration; it is sent once and never stored or logged by the agent.

        ``accept_notice`` sees the notice and returns whether the user accepts it; BYOD
        enrollment stops (``PermissionError``) when it is refused or absent.
        """
        accepted: str | None = None
        if ownership == "byod":
            notice = self.client.privacy_notice("byod")
            if accept_notice is None or not accept_notice(notice):
                raise PermissionError("the BYOD privacy notice was not accepted")
            accepted = notice_profile_id(notice)
        serial = serial_number or self.collector().serial_number
        enrolled = self.client.enroll(
            platform="linux",
            ownership=ownership,
            token=token,
            serial_number=serial if token is None else None,
            privacy_notice_accepted=accepted,
            enrollment_secret=enrollment_secret if token is None else None,
        )
        self.state = AgentState(
            server_url=self.client.base_url,
            device_id=enrolled.device_id,
            platform="linux",
            ownership=ownership,
            certificate=enrolled.certificate,
            ca_certificate=enrolled.ca_certificate,
            checkin_url=enrolled.checkin_url,
            enrolled_at=datetime.now(UTC).isoformat(),
        )
        self.state_dir.save(self.state)
        return self.state

    def certificate_expires_at(self) -> datetime | None:
        if self.state is None or not self.state.certificate:
            return None
        cert = x509.load_pem_x509_certificate(self.state.certificate.encode())
        return cert.not_valid_after_utc

    def renew_if_due(self, within: timedelta = RENEW_BEFORE) -> bool:
        """Renew the device certificate (same key, new CSR) when it expires within
        ``within``; the server revokes the old one. Returns whether it renewed."""
        expires = self.certificate_expires_at()
        if self.state is None or expires is None or expires - datetime.now(UTC) > within:
            return False
        renewed = self.client.renew(self.state.device_id)
        self.state.certificate = renewed.certificate
        if renewed.ca_certificate:
            self.state.ca_certificate = renewed.ca_certificate
        self.state_dir.save(self.state)
        return True

    def report(self) -> dict[str, Any]:
        collect_only = self.state.collect if self.state and self.state.collect else None
        return agent_report(self.collector(), collect_only, self.state_dir.installed())

    def checkin(self) -> CheckinResult:
        """Check in once, carry out the commands received and post each result."""
        if self.state is None:
            raise NotEnrolled("not enrolled")
        self.renew_if_due()
        answer = self.client.checkin("agent", self.report())
        if answer.collect and answer.collect != self.state.collect:
            self.state.collect = list(answer.collect)
            self.state_dir.save(self.state)
        executed: list[tuple[dict[str, Any], CommandOutcome]] = []
        again = False
        for command in answer.commands:
            outcome = self.executor.execute(command)
            self.client.post_result(str(command["id"]), outcome.status, outcome.detail)
            executed.append((command, outcome))
            again = again or outcome.wants_checkin
        if again:
            self.client.checkin("agent", self.report())
        return CheckinResult(answer=answer, executed=executed)

    def _wait_once(self, stop: threading.Event, timeout_s: int, due: float) -> bool:
        """One long-poll; False when the loop should check in now (a command is pending, the
        server asked for a fresh check-in, or the wait was superseded and we slept until the
        check-in is due).

        A refused long-poll (no free slot: 503 with Retry-After; any other non-identity
        refusal) falls back to periodic check-in: sleep for the hint (at most until the
        check-in is due), then try again. A superseded wait means another wait of this
        device is open (an older instance of this agent, a clone): we do not wait again
        until the next check-in, so two waiters never end each other in a loop."""
        try:
            waited = self.client.wait_for_commands(timeout_s)
        except ProtocolError as exc:
            if exc.status in (401, 403):
                raise  # refused identity: the outer loop stops
            hint = exc.retry_after_s if exc.retry_after_s is not None else float(timeout_s)
            log.info("long-poll refused (%s); checking in periodically", exc.error)
            stop.wait(max(0.0, min(hint, due - time.monotonic())))
            return time.monotonic() < due
        if int(waited.get("pending") or 0) > 0:
            return False
        if waited.get("ended") == "checkin_requested":
            log.info("the server asked for a check-in now")
            return False
        if waited.get("ended") == "superseded":
            log.info("long-poll superseded by another wait of this device")
            stop.wait(max(0.0, due - time.monotonic()))
            return False
        return True

    def run(
        self,
        stop: threading.Event,
        *,
        max_wait_s: int = MAX_WAIT_S,
        on_checkin: Callable[[CheckinResult], None] | None = None,
    ) -> None:
        """Check in, then long-poll until the next check-in is due; until ``stop`` is set."""
        backoff = 1.0
        while not stop.is_set():
            try:
                result = self.checkin()
                if on_checkin is not None:
                    on_checkin(result)
                backoff = 1.0
                # Long-poll until the next check-in is due; the server answers early when a
                # command is queued, and the loop checks in at once to receive it.
                due = time.monotonic() + result.answer.next_checkin_s
                while not stop.is_set():
                    left = int(due - time.monotonic())
                    if left <= 0:
                        break
                    if not self._wait_once(stop, min(left, max_wait_s, MAX_WAIT_S), due):
                        break
            except ProtocolError as exc:
                if exc.status in (401, 403):
                    raise  # refused identity: retrying with the same key cannot help
                log.warning("check-in refused: %s", exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
            except httpx.HTTPError as exc:
                log.warning("server unreachable: %s", exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
