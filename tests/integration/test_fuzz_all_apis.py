"""Schemathesis over EVERY operation of /openapi.json: no 5xx, documented status codes and
content types, responses that match their schemas.

Each operation is fuzzed with valid and invalid data (positive and negative generation),
first without credentials, then with valid ones where they can be made per request: the
device protocol with a request proof signed by an enrolled device over each generated body,
the admin API with the admin token, the OAuth endpoints with a client's secret. (The posture
decision API and the Okta hook get their credentialed runs in
tests/unit/posture_gateway/integrations/test_fuzz_openapi.py.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from mdm_core.posture.model import Ownership, Platform
from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin
from posture_gateway.api.openapi import build_document
from posture_gateway.app import create_app
from posture_gateway.hr.signature import sign as hr_sign
from posture_gateway.settings import Settings
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.integration.oidc.conftest import CONF_SECRET, write_files

PUBLIC_URL = "http://localhost"
# A schema cannot say everything the server checks (a report must match the device's
# platform, a CSR must parse): valid-looking data may get a documented 4xx, never a 5xx.
NOT_APPLICABLE = [checks.positive_data_acceptance]
AUTH_CHECKS = [*NOT_APPLICABLE, checks.ignored_auth, checks.negative_data_rejection]
ADMIN_TOKEN = "admin-token-" + "a" * 40
SCIM_TOKEN = "scim-token-" + "s" * 40
POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"

# Every documented operation; a test below checks this list IS the document.
OPERATIONS = [
    ("/.well-known/openid-configuration", "GET"),
    ("/admin/api/commands/{command_id}/cancel", "POST"),
    ("/admin/api/devices", "GET"),
    ("/admin/api/devices/{device_id}", "GET"),
    ("/admin/api/devices/{device_id}/commands", "GET"),
    ("/admin/api/devices/{device_id}/lock", "POST"),
    ("/admin/api/devices/{device_id}/retire", "POST"),
    ("/admin/api/devices/{device_id}/selective-wipe", "POST"),
    ("/admin/api/devices/{device_id}/wipe", "POST"),
    ("/admin/api/wipe-requests", "GET"),
    ("/admin/api/wipe-requests/{request_id}/approve", "POST"),
    ("/admin/api/wipe-requests/{request_id}/reject", "POST"),
    ("/admin/api/policies", "GET"),
    ("/admin/api/sessions", "GET"),
    ("/admin/api/what-if", "GET"),
    # Offboarding (posture_gateway/offboarding): named admins only
    ("/admin/api/offboarding", "GET"),
    ("/admin/api/offboarding", "POST"),
    ("/admin/api/offboarding/reinstate", "POST"),
    ("/admin/api/offboarding/{job_id}/cancel", "POST"),
    ("/api/v1/decision", "POST"),
    ("/api/v1/nonce", "POST"),
    ("/entra/eam/.well-known/openid-configuration", "GET"),
    ("/entra/eam/jwks.json", "GET"),
    ("/healthz", "GET"),
    ("/hooks/okta/token", "POST"),
    ("/jwks.json", "GET"),
    ("/mdm/v1/ca", "GET"),
    ("/mdm/v1/checkin", "POST"),
    ("/mdm/v1/commands/wait", "GET"),
    ("/mdm/v1/commands/{command_id}/result", "POST"),
    ("/mdm/v1/enroll", "POST"),
    ("/mdm/v1/privacy-notice", "GET"),
    ("/mdm/v1/renew", "POST"),
    ("/oauth/introspect", "POST"),
    ("/oauth/revoke", "POST"),
    ("/oauth/token", "POST"),
    ("/oauth/userinfo", "GET"),
    ("/oauth/userinfo", "POST"),
    ("/openapi.json", "GET"),
    ("/readyz", "GET"),
    # SCIM 2.0 (idp_connectors/scim)
    ("/scim/v2/.search", "POST"),
    ("/scim/v2/Groups", "GET"),
    ("/scim/v2/Groups", "POST"),
    ("/scim/v2/Groups/.search", "POST"),
    ("/scim/v2/Groups/{resource_id}", "DELETE"),
    ("/scim/v2/Groups/{resource_id}", "GET"),
    ("/scim/v2/Groups/{resource_id}", "PATCH"),
    ("/scim/v2/Groups/{resource_id}", "PUT"),
    ("/scim/v2/ResourceTypes", "GET"),
    ("/scim/v2/ResourceTypes/{name}", "GET"),
    ("/scim/v2/Schemas", "GET"),
    ("/scim/v2/Schemas/{urn}", "GET"),
    ("/scim/v2/ServiceProviderConfig", "GET"),
    ("/scim/v2/Users", "GET"),
    ("/scim/v2/Users", "POST"),
    ("/scim/v2/Users/.search", "POST"),
    ("/scim/v2/Users/{resource_id}", "DELETE"),
    ("/scim/v2/Users/{resource_id}", "GET"),
    ("/scim/v2/Users/{resource_id}", "PATCH"),
    ("/scim/v2/Users/{resource_id}", "PUT"),
    # Shared Signals transmitter (posture_gateway/signals)
    ("/.well-known/ssf-configuration", "GET"),
    # HR webhooks and their admin listing (posture_gateway/hr)
    ("/admin/api/hr/deliveries", "GET"),
    ("/hr/v1/webhooks/bamboohr", "POST"),
    ("/hr/v1/webhooks/generic", "POST"),
    ("/ssf/poll/{stream_id}", "POST"),
    ("/ssf/status", "GET"),
    ("/ssf/status", "POST"),
    ("/ssf/streams", "DELETE"),
    ("/ssf/streams", "GET"),
    ("/ssf/streams", "PATCH"),
    ("/ssf/streams", "POST"),
    ("/ssf/streams", "PUT"),
    ("/ssf/subjects/add", "POST"),
    ("/ssf/subjects/remove", "POST"),
    ("/ssf/verify", "POST"),
]
#: The Shared Signals receiver's access token (client credentials), made by the fixture.
SSF_TOKEN: dict[str, str] = {}
#: A named admin's token (role admin: every admin route), made by the fixture.
NAMED_ADMIN: dict[str, str] = {}
#: The HR webhooks' secrets (the fixture configures them).
HR_KEYS = {"bamboohr": "fuzz-bamboo-key-" + "b" * 24, "postureHr": "fuzz-generic-key-" + "g" * 24}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, EnrolledDevice]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    clients, users = write_files(tmp)
    app = create_app(
        Settings.model_validate(
            {
                "data_dir": tmp / "data",
                "dev_mode": True,
                "public_url": PUBLIC_URL,
                "policy_dir": POLICY_DIR,
                "admin_token": ADMIN_TOKEN,
                # every run without a valid admin token fails from the same address
                "admin_auth_failures_per_minute": 1_000_000,
                "oidc": {"clients_file": clients, "users_file": users},
                # the confidential client is a Shared Signals receiver; polls do not wait
                "signals": {"receivers": [{"client_id": "conf"}], "poll_max_wait": "0s"},
                "scim": {
                    "clients": [{"id": "fuzz", "token_sha256": _sha256(SCIM_TOKEN)}],
                    # every anonymous run fails authentication from the same address
                    "auth_failures_per_minute": 1_000_000,
                },
                "hr": {
                    "bamboohr": {"secret": HR_KEYS["bamboohr"]},
                    "generic": {"secret": HR_KEYS["postureHr"]},
                },
            }
        )
    )
    core = app.extensions["posture"].core
    device = enroll_device(core, "u-alice", ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    basic = base64.b64encode(f"conf:{CONF_SECRET}".encode()).decode("ascii")
    issued = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "ssf.manage ssf.read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert issued.status_code == 200, issued.get_data(as_text=True)
    SSF_TOKEN["token"] = issued.json["access_token"]  # type: ignore[index]
    NAMED_ADMIN["token"] = add_admin(core.storage, "fuzz", Role.ADMIN, actor="operator:fuzz")[
        1
    ].value
    yield app, device
    app.extensions["posture_signals"].close()
    core.close()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _credentials(operation: Any, kwargs: dict[str, Any], device: EnrolledDevice) -> None:
    """Put valid credentials for ``operation`` into the request ``kwargs`` (in place)."""
    schemes = {name for req in operation.definition.raw.get("security", []) for name in req}
    headers = kwargs.setdefault("headers", {})
    if "deviceProof" in schemes:
        body = kwargs.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        url = PUBLIC_URL + kwargs["path"]
        headers["Device-Proof"] = device.request_proof(kwargs["method"], url, body)
    if "adminToken" in schemes:  # a named admin: the shared token opens 3 read-only routes
        headers["Authorization"] = f"Bearer {NAMED_ADMIN['token']}"
    if "scimBearer" in schemes:
        headers["Authorization"] = f"Bearer {SCIM_TOKEN}"
    for scheme in ("bamboohr", "postureHr"):  # HR webhooks: HMAC over body || timestamp
        if f"{scheme}Signature" in schemes:
            body = kwargs.get("data") or b""
            stamp = str(int(time.time()))
            prefix = "X-BambooHR" if scheme == "bamboohr" else "X-Posture"
            headers[f"{prefix}-Timestamp"] = stamp
            headers[f"{prefix}-Signature"] = hr_sign(
                HR_KEYS[scheme].encode(), body if isinstance(body, bytes) else body.encode(), stamp
            )
    if "ssfBearer" in schemes:
        headers["Authorization"] = f"Bearer {SSF_TOKEN['token']}"
    if "clientSecretBasic" in schemes:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"conf:{CONF_SECRET}".encode()
        ).decode("ascii")


# Operations without any input (nothing to make invalid: negative generation has no case).
NO_INPUT = {
    ("/.well-known/openid-configuration", "GET"),
    ("/.well-known/ssf-configuration", "GET"),
    ("/api/v1/nonce", "POST"),  # no body or parameters: only its credentials
    ("/entra/eam/.well-known/openid-configuration", "GET"),
    ("/entra/eam/jwks.json", "GET"),
    ("/healthz", "GET"),
    ("/jwks.json", "GET"),
    ("/mdm/v1/ca", "GET"),
    ("/openapi.json", "GET"),
    ("/readyz", "GET"),
    ("/scim/v2/ResourceTypes", "GET"),
    ("/scim/v2/Schemas", "GET"),
    ("/scim/v2/ServiceProviderConfig", "GET"),
}
# Operations whose credentials this module makes per request (see _credentials).
CREDENTIALED = {
    ("/admin/api/hr/deliveries", "GET"),
    ("/hr/v1/webhooks/bamboohr", "POST"),
    ("/hr/v1/webhooks/generic", "POST"),
    ("/admin/api/commands/{command_id}/cancel", "POST"),
    ("/admin/api/devices", "GET"),
    ("/admin/api/devices/{device_id}", "GET"),
    ("/admin/api/devices/{device_id}/commands", "GET"),
    ("/admin/api/devices/{device_id}/lock", "POST"),
    ("/admin/api/devices/{device_id}/retire", "POST"),
    ("/admin/api/devices/{device_id}/selective-wipe", "POST"),
    ("/admin/api/devices/{device_id}/wipe", "POST"),
    ("/admin/api/wipe-requests", "GET"),
    ("/admin/api/wipe-requests/{request_id}/approve", "POST"),
    ("/admin/api/wipe-requests/{request_id}/reject", "POST"),
    ("/admin/api/policies", "GET"),
    ("/admin/api/sessions", "GET"),
    ("/admin/api/what-if", "GET"),
    ("/admin/api/offboarding", "GET"),
    ("/admin/api/offboarding", "POST"),
    ("/admin/api/offboarding/reinstate", "POST"),
    ("/admin/api/offboarding/{job_id}/cancel", "POST"),
    ("/mdm/v1/checkin", "POST"),
    ("/mdm/v1/commands/wait", "GET"),
    ("/mdm/v1/commands/{command_id}/result", "POST"),
    ("/mdm/v1/renew", "POST"),
    ("/oauth/introspect", "POST"),
    ("/oauth/revoke", "POST"),
    ("/oauth/token", "POST"),
    ("/scim/v2/.search", "POST"),
    ("/scim/v2/Groups", "GET"),
    ("/scim/v2/Groups", "POST"),
    ("/scim/v2/Groups/.search", "POST"),
    ("/scim/v2/Groups/{resource_id}", "DELETE"),
    ("/scim/v2/Groups/{resource_id}", "GET"),
    ("/scim/v2/Groups/{resource_id}", "PATCH"),
    ("/scim/v2/Groups/{resource_id}", "PUT"),
    ("/scim/v2/Users", "GET"),
    ("/scim/v2/Users", "POST"),
    ("/scim/v2/Users/.search", "POST"),
    ("/scim/v2/Users/{resource_id}", "DELETE"),
    ("/scim/v2/Users/{resource_id}", "GET"),
    ("/scim/v2/Users/{resource_id}", "PATCH"),
    ("/scim/v2/Users/{resource_id}", "PUT"),
    ("/ssf/poll/{stream_id}", "POST"),
    ("/ssf/status", "GET"),
    ("/ssf/status", "POST"),
    ("/ssf/streams", "DELETE"),
    ("/ssf/streams", "GET"),
    ("/ssf/streams", "PATCH"),
    ("/ssf/streams", "POST"),
    ("/ssf/streams", "PUT"),
    ("/ssf/subjects/add", "POST"),
    ("/ssf/subjects/remove", "POST"),
    ("/ssf/verify", "POST"),
}
RUNS = [
    pytest.param(path, method, mode, authenticated, id=f"{method} {path} {mode.value} {who}")
    for path, method in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or (path, method) not in NO_INPUT
    for authenticated, who in ((False, "anonymous"), (True, "credentials"))
    if not authenticated or (path, method) in CREDENTIALED
]


@pytest.mark.parametrize(("path", "method", "mode", "authenticated"), RUNS)
def test_no_server_error_and_documented_answers(
    fuzz_app: tuple[Flask, EnrolledDevice],
    path: str,
    method: str,
    mode: GenerationMode,
    authenticated: bool,
) -> None:
    app, device = fuzz_app
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operation = schema[path][method]
    client = app.test_client()
    statuses: list[int] = []

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case: Any) -> None:
        kwargs = case.as_transport_kwargs()
        if "json" in kwargs:  # the exact bytes sent, so a device proof can sign them
            kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
        if path == "/mdm/v1/commands/wait":  # a long-poll must not hold the test for 60 s
            kwargs["query_string"] = {"timeout": "0"}
        if authenticated:
            _credentials(operation, kwargs, device)
        response = client.open(
            kwargs.pop("path"),
            method=kwargs.pop("method"),
            headers=kwargs.pop("headers"),
            query_string=kwargs.pop("query_string", None),
            data=kwargs.pop("data", None),
        )
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
        if authenticated:
            # Our credentials replace the generated ones: schemathesis' auth checks (which
            # assume its own, invalid, auth values) do not apply; every other check does.
            case.validate_response(response, excluded_checks=AUTH_CHECKS)
        else:
            case.validate_response(response, excluded_checks=NOT_APPLICABLE)
        statuses.append(response.status_code)

    fuzz()
    assert statuses, "no request was generated"


def test_the_fuzzed_operations_are_the_whole_document(
    fuzz_app: tuple[Flask, EnrolledDevice],
) -> None:
    app, _ = fuzz_app
    documented = {
        (path, method.upper())
        for path, item in build_document(app)["paths"].items()
        for method in item
    }
    assert documented == set(OPERATIONS)


def test_valid_credentials_reach_the_handlers(fuzz_app: tuple[Flask, EnrolledDevice]) -> None:
    """The credentialed runs above are not all refusals: a signed check-in and the admin
    token are accepted (so the fuzzer explores past the authentication)."""
    app, device = fuzz_app
    client = app.test_client()
    body = json.dumps({"format": "agent", "report": {"platform": "linux"}}).encode()
    url = PUBLIC_URL + "/mdm/v1/checkin"
    signed = client.post(
        "/mdm/v1/checkin",
        data=body,
        headers={"Device-Proof": device.request_proof("POST", url, body)},
        content_type="application/json",
    )
    assert signed.status_code in (200, 422), signed.get_data(as_text=True)
    admin = client.get("/admin/api/policies", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 200
