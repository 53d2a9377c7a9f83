""" "Check again" on the remediation page: ask the device for a fresh check-in, then re-check.

When a login is blocked for a device, the login transaction remembers that device
(``tx["recheck_device"]``, set by :mod:`posture_gateway.oidc.login`). The remediation page's
"Check again" posts here:

- ``POST /login/device/recheck`` (CSRF): reads the device's read-model version, asks the
  device to check in now (:class:`mdm_core.device.checkin_now.CheckinNow`: over the bus to
  whichever process holds its long-poll; rate-limited per device, audited with the user as
  actor) and answers a small page that polls the status below. A request that cannot be sent
  (limit reached, bus down) is not an error for the user: the page goes straight back to the
  device step, which decides on what is known (fail closed as always).
- ``GET /login/device/recheck/status`` -> ``{"fresh": bool, "done": bool}``: ``fresh`` once
  the device's version moved past the one read when the request was sent (a check-in
  committed since), ``done`` when fresh or ``RECHECK_WAIT_S`` passed. Each poll is one version
  read: no request thread is held while the device checks in.

The page then goes to ``GET /login/device``: a new nonce and a new device step, decided on
the fresh posture. Only the device the transaction was blocked for can be asked; the request
grants nothing by itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, jsonify, redirect, url_for
from flask.typing import ResponseReturnValue

from mdm_core.device.checkin_now import CheckinNow, CheckinNowRefused
from mdm_core.read_model import device_key
from mdm_core.read_model.scope import VersionReader
from mdm_core.runtime import MdmCore
from posture_gateway.api.openapi import not_json
from posture_gateway.oidc.login import _check_csrf, _no_login, _save, _tx
from posture_gateway.oidc.web import render_page
from posture_gateway.state import state

__all__ = ["RECHECK_WAIT_S", "bp", "checkin_now_of"]

log = logging.getLogger(__name__)

bp = Blueprint("login_recheck", __name__)

#: The longest the page waits for the fresh check-in before re-checking anyway (seconds).
RECHECK_WAIT_S = 10.0
_CHECKIN_NOW_KEY = "checkin_now"


def checkin_now_of(core: MdmCore) -> CheckinNow:
    """The core's check-in requester (built on first use, on the core's bus and limiter)."""
    found = core.extras.get(_CHECKIN_NOW_KEY)
    if isinstance(found, CheckinNow):
        return found
    built = CheckinNow(core.bus, core.storage, core.rate_limiter)
    core.extras[_CHECKIN_NOW_KEY] = built
    return built


def _version(core: MdmCore, device_id: str) -> int:
    key = device_key(device_id)
    return int(VersionReader(core.storage).versions([key])[key])


@bp.post("/login/device/recheck")
@not_json("html page")
def recheck() -> ResponseReturnValue:
    tx = _tx()
    if tx is None or not tx.get("user"):
        return _no_login()
    _check_csrf()
    device_id = tx.get("recheck_device")
    if not isinstance(device_id, str) or not device_id:
        return redirect(url_for("oidc_login.device_page"), 303)
    core = state().core
    try:
        since = _version(core, device_id)
        checkin_now_of(core).request(device_id, actor="user:" + str(tx["user"]["user_id"]))
    except CheckinNowRefused:
        log.info("check-in request for %s refused: limit reached", device_id)
        return redirect(url_for("oidc_login.device_page"), 303)
    except Exception:  # store or bus down: the device step decides on what is known
        log.warning("check-in request for %s not sent", device_id, exc_info=True)
        return redirect(url_for("oidc_login.device_page"), 303)
    recheck_state: dict[str, Any] = {
        "device": device_id,
        "since": since,
        "until": time.time() + RECHECK_WAIT_S,
    }
    tx["recheck"] = recheck_state
    _save(tx)
    return render_page(
        "oidc/rechecking.html",
        connect=["'self'"],  # the page's script polls the status endpoint (same origin)
        status_url=url_for("login_recheck.status"),
        next_url=url_for("oidc_login.device_page"),
        wait_s=int(RECHECK_WAIT_S),
    )


@bp.get("/login/device/recheck/status")
@not_json("the remediation page's own poll, bound to the login session (not an API)")
def status() -> ResponseReturnValue:
    tx = _tx()
    pending = tx.get("recheck") if tx else None
    if not isinstance(pending, dict):
        return jsonify(fresh=False, done=True)
    try:
        fresh = _version(state().core, str(pending["device"])) > int(pending["since"])
    except Exception:  # store down: stop waiting; the device step answers honestly
        return jsonify(fresh=False, done=True)
    done = fresh or time.time() >= float(pending["until"])
    response = jsonify(fresh=fresh, done=done)
    response.headers["Cache-Control"] = "no-store"
    return response
