"""What operators see after a real login and check-in: /metrics, request ids, the access log,
the decision log — and what they must never see (secrets, tokens, dropped posture fields).

The app is the real one (real device gate, shipped policies, a BYOD Linux laptop enrolled and
checked in over the device protocol); logs are captured as JSON lines from the root logger.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from idp_connectors import errors as idp_errors
from mdm_core.access.decision import OUTCOMES
from mdm_core.access.request import Channel
from mdm_core.device.commands import CommandStatus, CommandType
from mdm_core.domain import errors as mdm_errors
from mdm_core.domain.errors import MdmError
from mdm_core.posture.model import Ownership, Platform
from mdm_core.posture.normalize import FORMATS
from mdm_core.ratelimit.guard import LIMIT_NAMES
from mdm_core.simulator.reports import DeviceTraits, native_reports
from posture_gateway.hr.metrics import REFUSAL_REASONS as HR_REFUSAL_REASONS
from posture_gateway.hr.metrics import SOURCES as HR_SOURCES
from posture_gateway.hr.service import OUTCOMES as HR_OUTCOMES
from posture_gateway.observability.logs import configure_logging
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.settings import Settings
from posture_gateway.signals.metrics import LATENCY as SSF_LATENCY
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.integration.oidc.conftest import CONF_SECRET, PASSWORD, Browser, basic, write_files
from tests.integration.oidc.test_login_with_device import _add_user, _core, _finish

METRICS_TOKEN = "metrics-token-" + "m" * 40
DROPPED_HOSTNAME = "leaky-hostname-5f2c9a"  # BYOD profile does not collect hostname
DROPPED_SERIAL = "LEAKYSERIAL-77Q1"  # nor serial_number


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    clients, users = write_files(tmp_path)
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": "http://localhost",
            "policy_dir": Path(__file__).resolve().parents[3] / "policies",
            "oidc": {"clients_file": clients, "users_file": users},
            "metrics": {"token": METRICS_TOKEN},
        }
    )


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def _byod_check_in(app: Flask, dev: EnrolledDevice) -> None:
    client = app.test_client()
    url = _core(app).config.public_url + "/mdm/v1/checkin"
    for fmt, report in native_reports("linux", DROPPED_SERIAL, "byod", DeviceTraits()):
        report = {**report, "hostname": DROPPED_HOSTNAME}
        body = json.dumps({"format": fmt, "report": report}).encode()
        res = client.post(
            "/mdm/v1/checkin",
            data=body,
            headers={"Device-Proof": dev.request_proof("POST", url, body)},
            content_type="application/json",
        )
        assert res.status_code == 200, res.get_data(as_text=True)


def _full_story(app: Flask, provider: OIDCProvider) -> dict[str, str]:
    """Enroll + check in a BYOD laptop, sign in through the device gate, redeem and refresh:
    returns every secret the story used."""
    _add_user(app)
    dev = enroll_device(_core(app), "u-alice", ownership=Ownership.BYOD, platform=Platform.LINUX)
    _byod_check_in(app, dev)
    browser = Browser(app.test_client())
    assert browser.authorize().status_code == 303
    assert browser.login().status_code == 303
    csrf, nonce = browser.device_page()
    proof = dev.login_proof(audience=provider.issuer.issuer, nonce=nonce)
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
    )
    code = _finish(browser, response)
    tokens = browser.exchange(code)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    body = tokens.json
    refreshed = browser.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        headers=basic(),
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    cookie = browser.client.get_cookie("session")
    secrets = {
        "password": PASSWORD,
        "client_secret": CONF_SECRET,
        "code": code,
        "access_token": body["access_token"],
        "id_token": body["id_token"],
        "refresh_token": body["refresh_token"],
        "new_refresh_token": refreshed.json["refresh_token"],
        "login_proof": proof,
        "csrf": csrf,
        "dropped_hostname": DROPPED_HOSTNAME,
        "dropped_serial": DROPPED_SERIAL,
        "metrics_token": METRICS_TOKEN,
    }
    if cookie is not None:
        secrets["session_cookie"] = cookie.value
    scraped = app.test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert scraped.status_code == 200
    secrets["device_id"] = dev.device_id  # not a secret, but never a metric label
    return secrets


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_logs_of_a_full_login_and_check_in_hold_no_secret(
    app: Flask, provider: OIDCProvider, log_lines: io.StringIO
) -> None:
    used = _full_story(app, provider)
    output = log_lines.getvalue()
    assert output, "nothing was logged"
    lines = _json_lines(log_lines)  # every line is one JSON object
    leaked = {
        name: value
        for name, value in used.items()
        if name != "device_id" and (value in output or value[:24] in output)
    }
    assert leaked == {}
    # No query string in any logged path (codes and hints travel there).
    assert all("?" not in line.get("path", "") for line in lines)
    # The pieces are there: a request line per request, one decision line per decision.
    requests_ = [line for line in lines if line.get("event") == "request"]
    assert {"/mdm/v1/checkin", "/login/device", "/oauth/token", "/metrics"} <= {
        r["path"] for r in requests_
    }
    for r in requests_:
        assert set(r) >= {"request_id", "method", "path", "status", "latency_ms"}
        assert re.fullmatch(r"[0-9a-f]{32}", r["request_id"])
    decisions = [line for line in lines if line.get("event") == "decision"]
    # the login's decision, then the refresh's (a refresh decides on the device again)
    assert [d["channel"] for d in decisions] == ["oidc", "oidc_refresh"]
    assert decisions[1]["device"] == used["device_id"]
    decision = decisions[0]
    assert decision["outcome"] in OUTCOMES and decision["device"] == used["device_id"]
    assert decision["channel"] == "oidc" and isinstance(decision["latency_ms"], float)
    assert isinstance(decision["reasons"], list) and isinstance(decision["policy_ids"], list)
    assert bool(decision["policy_ids"]) == (decision["outcome"] != "allow")  # the ones that fired
    # The decision line carries the id of the request that made it.
    device_posts = [r for r in requests_ if r["path"] == "/login/device" and r["method"] == "POST"]
    assert decision["request_id"] == device_posts[0]["request_id"]


def _reason_codes(*modules: Any) -> set[str]:
    codes: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type) and isinstance(getattr(value, "reason", None), str):
                codes.add(value.reason)
    return codes


def _all_subclass_reasons(base: type) -> set[str]:
    out, todo = set(), [base]
    while todo:
        cls = todo.pop()
        reason = getattr(cls, "reason", None)
        if isinstance(reason, str):
            out.add(reason)
        todo.extend(cls.__subclasses__())
    return out


def test_every_metric_label_is_bounded(app: Flask, provider: OIDCProvider) -> None:
    """After a full story, every label of every posture_* metric has a value from a closed
    set (enumerations and error classes), never an id, URL or message."""
    used = _full_story(app, provider)
    # Refusals too: a check-in without a proof, one with a forged proof.
    client = app.test_client()
    body = b'{"format": "agent", "report": {}}'
    for headers in ({}, {"Device-Proof": "e30.e30.sig"}):
        refused = client.post(
            "/mdm/v1/checkin", data=body, headers=headers, content_type="application/json"
        )
        assert refused.status_code == 401
    hr = client.post("/hr/v1/webhooks/bamboohr", data=b"{}", content_type="application/json")
    assert hr.status_code == 404  # not configured here: a refusal counted by source and reason
    reasons = _all_subclass_reasons(MdmError) | _reason_codes(mdm_errors, idp_errors)
    reasons |= {"device_proof_invalid", "device_check_failed"}
    allowed: dict[str, set[str]] = {
        "channel": set(get_args(Channel)),
        # access decisions, and Shared Signals deliveries (posture_gateway/signals/metrics.py)
        "outcome": set(OUTCOMES) | {"delivered", "retry", "failed", "dropped"},
        "method": {"push", "poll"},
        # histogram buckets: the fixed upper bounds of the SET delivery latency
        "le": {floatToGoString(b) for b in SSF_LATENCY._upper_bounds},
        "kind": {"request", "login", "entra_hint", "upstream_id_token"},
        "reason": reasons,
        "format": set(FORMATS) | {"other"},
        "result": {"ok"} | reasons,
        "type": {t.value for t in CommandType},
        "status": {s.value for s in CommandStatus},
        "limit": set(LIMIT_NAMES),
        # HR webhooks (posture_gateway/hr/metrics.py)
        "source": set(HR_SOURCES),
    }
    allowed["outcome"] |= set(HR_OUTCOMES)
    allowed["reason"] |= set(HR_REFUSAL_REASONS)
    seen: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("posture_"):
            continue
        for sample in family.samples:
            for label, value in sample.labels.items():
                seen.setdefault(label, set()).add(value)
    assert seen, "no labelled posture_* metric"
    assert set(seen) <= set(allowed), f"unaudited label names: {set(seen) - set(allowed)}"
    unbounded = {label: values - allowed[label] for label, values in seen.items()}
    assert {k: v for k, v in unbounded.items() if v} == {}
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    page = text.get_data(as_text=True)
    for value in (used["device_id"], "u-alice", "alice", "http://", "/oauth/"):
        assert value not in page
    names = {f.name for f in text_string_to_metric_families(page)}
    assert {
        "posture_access_decisions",
        "posture_device_checkins",
        "posture_device_commands",
        "posture_device_proofs_verified",
        "posture_device_proof_refusals",
    } <= names
    assert seen["result"] - {"ok"}, "a refused check-in is counted with its reason"


def test_request_id_is_propagated_when_sane_and_replaced_when_not(app: Flask) -> None:
    client = app.test_client()
    sane = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42.x_y-z"})
    assert sane.headers["X-Request-ID"] == "lb-7f3a:42.x_y-z"
    for bad in ("has space", "x" * 129, "tab\there", "{json}", "a=b;c", ""):
        response = client.get("/healthz", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"]), bad
    fresh = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-ID"])
    # Errors carry one too.
    assert client.get("/no-such-page").headers["X-Request-ID"]


def test_access_line_has_no_query_string_in_text_format(app: Flask) -> None:
    stream = io.StringIO()
    handler = configure_logging("text", stream=stream)
    try:
        app.test_client().get("/oauth/authorize?client_id=conf&login_hint=secret-hint-123")
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert "GET /oauth/authorize" in out and "secret-hint-123" not in out
    assert "request_id=" in out and "status=" in out
