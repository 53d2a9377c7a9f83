"""The device-protocol client: enrollment, signed check-ins, command results, long-poll.

One factory (:func:`make_http_client`) builds every ``httpx.Client`` and accepts
``transport=`` (an ``httpx.WSGITransport`` runs the protocol in-process against a Flask app,
the simulator and tests use that; the default is real HTTP). Every request after enrollment
carries a request proof signed by the device key over the exact bytes
sent (:mod:`mdm_core.agent.keys`), in the ``Device-Proof`` header.

Endpoints (``/mdm/v1``): ``POST /enroll``, ``POST /renew``, ``GET /ca``,
``GET /privacy-notice?ownership=``, ``POST /checkin``, ``POST /commands/<id>/result``,
``GET /commands/wait?timeout=S``. A 4xx/5xx answer raises :class:`ProtocolError` carrying the
server's ``error`` code and ``reason``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from mdm_core.agent.keys import DeviceKey

__all__ = [
    "API_PREFIX",
    "PROOF_HEADER",
    "CheckinAnswer",
    "DeviceClient",
    "Enrollment",
    "ProtocolError",
    "make_http_client",
    "notice_profile_id",
    "parse_checkin_answer",
]

API_PREFIX = "/mdm/v1"
#: The header carrying the request proof (the server's ``mdm_core.device.proof.PROOF_HEADER``).
PROOF_HEADER = "Device-Proof"


class ProtocolError(Exception):
    """The server refused a request: HTTP ``status``, machine-readable ``error``, ``reason``,
    and the ``Retry-After`` seconds it asked for (``None`` when it gave none)."""

    def __init__(
        self, status: int, error: str, reason: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Enrollment:
    device_id: str
    certificate: str
    ca_certificate: str
    checkin_url: str


@dataclass(frozen=True, slots=True)
class CheckinAnswer:
    commands: list[dict[str, Any]]
    collect: list[str]
    next_checkin_s: int
    compliance: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)


def make_http_client(
    base_url: str,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 30.0,
    verify: bool | str = True,
) -> httpx.Client:
    """The one place device HTTP clients are built (``transport=`` is the test/in-process seam)."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        verify=verify,
        headers={"User-Agent": "posture-agent/0.1"},
        follow_redirects=False,
    )


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        data = resp.json()
    except ValueError:
        data = {}
    error = str(data.get("error") or f"http_{resp.status_code}") if isinstance(data, dict) else ""
    reason = str(data.get("reason") or resp.reason_phrase) if isinstance(data, dict) else ""
    raise ProtocolError(
        resp.status_code,
        error or f"http_{resp.status_code}",
        reason,
        retry_after_s=_retry_after(resp.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; an HTTP date is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86400 else None


def _json_object(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError as exc:
        raise ProtocolError(resp.status_code, "bad_response", "server answered non-JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError(resp.status_code, "bad_response", "server answered a non-object")
    return data


class DeviceClient:
    """Speaks the device protocol for one device key (and, once enrolled, one device id)."""

    def __init__(
        self,
        base_url: str,
        key: DeviceKey,
        *,
        device_id: str | None = None,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.device_id = device_id
        self.http = http or make_http_client(self.base_url, transport=transport)

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}{path}"

    # --- unauthenticated --------------------------------------------------------------------

    def ca_certificate(self) -> str:
        resp = self.http.get(self.url("/ca"))
        _raise_for(resp)
        if "json" in resp.headers.get("content-type", ""):
            return str(_json_object(resp).get("ca_certificate", ""))
        return resp.text

    def privacy_notice(self, ownership: str) -> dict[str, Any]:
        resp = self.http.get(self.url("/privacy-notice"), params={"ownership": ownership})
        _raise_for(resp)
        return _json_object(resp)

    def enroll(
        self,
        *,
        platform: str,
        ownership: str,
        token: str | None = None,
        serial_number: str | None = None,
        privacy_notice_accepted: str | None = None,
        device_id: str | None = None,
        common_name: str = "posture-device",
        enrollment_secret: str | None = None,
    ) -> Enrollment:
        """Send a CSR with a token or a registered serial (and its enrollment secret);
        remember the device id given back."""
        body: dict[str, Any] = {
            "platform": platform,
            "ownership": ownership,
            "csr": self.key.csr_pem(common_name),
        }
        if token is not None:
            body["token"] = token
        if serial_number is not None:
            body["serial_number"] = serial_number
        if privacy_notice_accepted is not None:
            body["privacy_notice_accepted"] = privacy_notice_accepted
        if device_id is not None:
            body["device_id"] = device_id
        if enrollment_secret is not None:
            body["enrollment_secret"] = enrollment_secret
        resp = self.http.post(self.url("/enroll"), json=body)
        _raise_for(resp)
        data = _json_object(resp)
        enrolled = Enrollment(
            device_id=str(data["device_id"]),
            certificate=str(data["certificate"]),
            ca_certificate=str(data.get("ca_certificate", "")),
            checkin_url=str(data.get("checkin_url", self.url("/checkin"))),
        )
        self.device_id = enrolled.device_id
        return enrolled

    # --- signed -----------------------------------------------------------------------------

    def signed(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send ``payload`` as JSON with a fresh proof over the exact bytes sent."""
        if self.device_id is None:
            raise RuntimeError("not enrolled: no device id")
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        url = self.url(path)
        proof = self.key.request_proof(self.device_id, method, url, body)
        headers = {PROOF_HEADER: proof}
        if body:
            headers["Content-Type"] = "application/json"
        return self.http.request(
            method,
            url,
            content=body,
            headers=headers,
            params=params,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )

    def renew(self, common_name: str = "posture-device") -> Enrollment:
        resp = self.signed("POST", "/renew", {"csr": self.key.csr_pem(common_name)})
        _raise_for(resp)
        data = _json_object(resp)
        return Enrollment(
            device_id=str(data.get("device_id", self.device_id)),
            certificate=str(data["certificate"]),
            ca_certificate=str(data.get("ca_certificate", "")),
            checkin_url=str(data.get("checkin_url", self.url("/checkin"))),
        )

    def checkin(self, fmt: str, report: dict[str, Any]) -> CheckinAnswer:
        resp = self.signed("POST", "/checkin", {"format": fmt, "report": report})
        _raise_for(resp)
        return parse_checkin_answer(_json_object(resp))

    def post_result(self, command_id: str, status: str, detail: str | None = None) -> None:
        body: dict[str, Any] = {"status": status}
        if detail is not None:
            body["detail"] = detail
        resp = self.signed("POST", f"/commands/{command_id}/result", body)
        _raise_for(resp)

    def wait_for_commands(self, timeout_s: int) -> dict[str, Any]:
        """Long-poll: returns when a command is queued for this device, after ``timeout_s``
        (the server may shorten it), or at once when a newer wait of this device ended it
        (``ended: "superseded"``). A server with no free slot answers 503 with Retry-After
        (raised as :class:`ProtocolError`)."""
        resp = self.signed(
            "GET",
            "/commands/wait",
            params={"timeout": str(int(timeout_s))},
            timeout=timeout_s + 15.0,  # the server holds the request up to timeout_s
        )
        _raise_for(resp)
        return _json_object(resp)


def notice_profile_id(notice: dict[str, Any]) -> str:
    """The privacy profile id a notice document names (what enrollment must echo back)."""
    value = notice.get("profile") or notice.get("profile_id") or notice.get("id")
    if not isinstance(value, str) or not value:
        raise ProtocolError(200, "bad_response", "privacy notice names no profile")
    return value


def parse_checkin_answer(data: dict[str, Any]) -> CheckinAnswer:
    commands = data.get("commands") or []
    collect = data.get("collect") or []
    return CheckinAnswer(
        commands=[c for c in commands if isinstance(c, dict)] if isinstance(commands, list) else [],
        collect=[str(c) for c in collect] if isinstance(collect, list) else [],
        next_checkin_s=int(data.get("next_checkin_s") or 900),
        compliance=dict(data.get("compliance") or {}),
        raw=data,
    )
