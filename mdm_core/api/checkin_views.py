"""HTTP endpoints of the device protocol for check-ins, command results, long-poll and the
privacy notice (blueprint ``bp``, under ``/mdm/v1``).

Every device request carries a request proof (:mod:`mdm_core.device.proof`) in the
``Device-Proof`` header (``Authorization: DeviceProof <jwt>`` is accepted too), bound to the
method, to ``CoreConfig.public_url`` + the request path, and to the exact body bytes. The
proof is verified in the same unit of work as the change it authorises; any refusal or bad
input rolls the whole unit back, so bad input changes nothing.

- ``POST /mdm/v1/checkin`` ``{"format": "apple|android|windows|agent", "report": {...}}`` ->
  ``{"commands": [{"id", "type", "payload"}], "collect": [...], "next_checkin_s": N,
  "compliance": {...}, "seq": N}``
- ``POST /mdm/v1/commands/<id>/result`` ``{"status": "acknowledged|error|not_now",
  "detail": "..."}`` -> ``{"id", "status"}``
- ``GET /mdm/v1/commands/wait?timeout=S`` (0 <= S <= 60) -> ``{"pending": N, "ended": E,
  "timeout_s": T}``: at once when commands are already waiting (``ended: "pending"``), as
  soon as one is queued (``"command_queued"``; the device then checks in to receive it),
  after ``T`` seconds (``"timeout"``; ``T`` is S shortened to the server's longest wait), or
  at once when the same device opened a newer wait (``"superseded"``: do not wait again
  until the next check-in), or when the gateway asked the device for a fresh posture
  (``"checkin_requested"``: check in now; :mod:`mdm_core.device.checkin_now`). Waits are
  bounded (:mod:`mdm_core.device.long_poll`): one per device, a few per process; when all
  are taken the answer is ``503 long_poll_unavailable`` with ``Retry-After`` at once, and
  the device keeps to its periodic check-in.
- ``GET /mdm/v1/privacy-notice?ownership=byod|corporate`` (public) -> the notice document.

Errors: ``{"error": "<code>", "reason": "<text>"}`` with 401 for a refused proof (the code is
the refusal reason), 400 malformed JSON/body, 413 too large, 415 not JSON, 422 a report or
payload that does not validate, 404 an unknown command, 409 an illegal transition, 503 with
``Retry-After`` a store that is down (``store_unavailable``) or no long-poll slot.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from mdm_core.api.errors import (
    current_core,
    error_response,
    install_error_handlers,
    json_object,
)
from mdm_core.bus.events import InProcessBus
from mdm_core.device.checkin import report_envelope
from mdm_core.device.checkin_now import requested_since
from mdm_core.device.commands import CommandStatus
from mdm_core.device.long_poll import LONG_POLL_KEY, Wait, WaitCapacityExhausted, WaitRegistry
from mdm_core.device.metrics import count_checkin
from mdm_core.device.proof import PROOF_HEADER, AuthenticatedDevice
from mdm_core.domain.errors import BadRequest, MalformedProof, MdmError
from mdm_core.posture.model import Ownership
from mdm_core.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from mdm_core.runtime import MdmCore

__all__ = ["bp", "MAX_WAIT_S", "wait_registry"]

bp = Blueprint("mdm_checkin", __name__, url_prefix="/mdm/v1")
install_error_handlers(bp)
log = logging.getLogger(__name__)

#: The longest timeout a device may ask for; the wait actually held is at most the registry's
#: ``max_wait_s`` (25 s by default): older agents asking for 60 s are served, not refused.
MAX_WAIT_S = 60


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    # The unit of work has rolled back; the device retries later. Details go to the log only.
    log.exception("device protocol request failed", exc_info=err)
    return error_response("internal_error", "the server could not process the request", 500)


def _proof() -> str:
    token = request.headers.get(PROOF_HEADER)
    if token is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "deviceproof":
            token = value.strip()
    if not token:
        raise MalformedProof(f"missing device proof ({PROOF_HEADER} header)")
    return token


def _authenticate(core: MdmCore, uow: UnitOfWork, body: bytes) -> AuthenticatedDevice:
    url = core.config.public_url.rstrip("/") + request.path
    return core.proofs.verify(_proof(), method=request.method, url=url, body=body, uow=uow)


@bp.post("/checkin")
def checkin() -> ResponseReturnValue:
    core = current_core()
    body = request.get_data(cache=False)
    now = datetime.now(UTC)
    fmt: object = None
    try:
        with core.storage.unit_of_work() as uow:
            device = _authenticate(core, uow, body)
            fmt, report = report_envelope(json_object(body))
            result = core.checkin.check_in(device, report, fmt, now, uow=uow)
    except MdmError as exc:
        count_checkin(fmt, exc.reason)
        raise
    count_checkin(fmt, "ok")  # committed
    return jsonify(result.answer())


@bp.post("/commands/<command_id>/result")
def command_result(command_id: str) -> ResponseReturnValue:
    core = current_core()
    body = request.get_data(cache=False)
    with core.storage.unit_of_work() as uow:
        device = _authenticate(core, uow, body)
        data = json_object(body)
        status, detail = data.get("status"), data.get("detail")
        if not isinstance(status, str):
            raise BadRequest("status must be a string")
        if detail is not None and not isinstance(detail, str):
            raise BadRequest("detail must be a string")
        command = core.commands.record_result(device.device.id, command_id, status, detail, uow=uow)
    return jsonify(id=command.id, status=command.status.value)


@bp.get("/commands/wait")
def wait_for_commands() -> ResponseReturnValue:
    core = current_core()
    waits = wait_registry(core)
    raw = request.args.get("timeout", str(waits.max_wait_s))
    try:
        requested = int(raw)
    except ValueError:
        raise BadRequest("timeout must be an integer number of seconds") from None
    if not 0 <= requested <= MAX_WAIT_S:
        raise BadRequest(f"timeout must be between 0 and {MAX_WAIT_S} seconds")
    body = request.get_data(cache=False)
    with core.storage.unit_of_work() as uow:  # commits the proof's jti before we wait
        device_id = _authenticate(core, uow, body).device.id
    timeout = waits.clamp(requested)
    wait = waits.open(device_id)  # ends this device's previous wait; 503 when full
    try:
        pending = _pending(core, device_id)  # registered first: nothing queued slips through
        if pending:
            ended = "pending"
        elif waits.take_request(device_id):  # asked to check in before this wait opened
            ended = "checkin_requested"
        else:
            ended = _hold(core, wait, device_id, timeout)
        if ended == "command_queued":
            pending = _pending(core, device_id)
    finally:
        waits.close(wait)
    return jsonify(pending=pending, ended=ended, timeout_s=timeout)


@bp.errorhandler(WaitCapacityExhausted)
def _no_room(err: WaitCapacityExhausted) -> Response:
    resp = error_response(err.reason, err.message, err.status)
    resp.headers["Retry-After"] = str(err.retry_after_s)
    return resp


#: Where the bus is per process (embedded default), how often a wait looks for a check-in
#: request sent through another process (seconds; one audit read each).
REQUEST_POLL_S = 1.0


def _hold(core: MdmCore, wait: Wait, device_id: str, timeout: int) -> str:
    """Hold ``wait`` up to ``timeout`` s; on a per-process bus also end it when another
    process sent this device a check-in request (:func:`requested_since`)."""
    if not isinstance(core.bus, InProcessBus):
        return wait.wait(timeout)
    started = datetime.now(UTC)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        ended = wait.wait(min(left, REQUEST_POLL_S))
        if ended != "timeout":
            return ended
        try:
            if requested_since(core.storage, device_id, started):
                return "checkin_requested"
        except Exception:  # the store is away: keep waiting on the bus alone
            log.warning("could not look for check-in requests", exc_info=True)


def wait_registry(core: MdmCore) -> WaitRegistry:
    """The core's long-poll registry (``build_core`` makes it; made here for bare cores)."""
    registry = core.extras.get(LONG_POLL_KEY)
    if not isinstance(registry, WaitRegistry):
        with _registry_lock:
            registry = core.extras.get(LONG_POLL_KEY)
            if not isinstance(registry, WaitRegistry):
                registry = WaitRegistry(core.bus)
                core.extras[LONG_POLL_KEY] = registry
    return registry


_registry_lock = threading.Lock()


def _pending(core: MdmCore, device_id: str) -> int:
    with core.storage.unit_of_work() as uow:
        ready = uow.commands.next_commands(device_id, 100)
    return sum(1 for c in ready if c.status is CommandStatus.QUEUED)


@bp.get("/privacy-notice")
def privacy_notice() -> ResponseReturnValue:
    raw = request.args.get("ownership", Ownership.BYOD.value)
    try:
        ownership = Ownership(raw)
    except ValueError:
        raise BadRequest("ownership must be byod or corporate") from None
    return jsonify(current_core().privacy.for_ownership(ownership).notice_document())
