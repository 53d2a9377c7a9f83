"""Every JSON endpoint of the app, fuzzed with hostile bodies (hypothesis): depth, size and
encoding (invalid UTF-8, UTF-16/32 and BOMs), NaN/Infinity, duplicate keys, huge numbers, NUL.

Each body is sent with working credentials — a device proof over those exact bytes, a bearer
token with ``posture.decide``, the Okta secret — so it reaches the parser. Every answer is a
4xx (never a 5xx), a hostile body is a 400, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select

from idp_connectors.entra import EntraHintSettings, EntraHintValidator
from idp_connectors.http import make_client
from mdm_core.storage.sql.tables import devices, posture_history, used_proofs
from mdm_core.support.json_input import JsonInputError, loads_bounded
from posture_gateway.integrations.settings import (
    EntraEamSettings,
    IntegrationSettings,
    OktaHookSettings,
)
from posture_gateway.integrations.state import integrations
from posture_gateway.settings import EnrollSettings
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.helpers.entra_double import EntraDouble
from tests.unit.posture_gateway.integrations.conftest import (
    PUBLIC_URL,
    DictDirectory,
    hidden_fields,
)
from tests.unit.posture_gateway.integrations.test_entra_eam import CLIENT_ID as EAM_CLIENT
from tests.unit.posture_gateway.integrations.test_posture_api import bearer, issue

OKTA_SECRET = "okta-hook-shared-secret-0123456789"
ENTRA = EntraDouble()
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    return IntegrationSettings(
        okta=OktaHookSettings(secret=SecretStr(OKTA_SECRET)),
        entra=EntraEamSettings(
            hint=EntraHintSettings(tenant_ids=(ENTRA.tenant_id,), app_id=ENTRA.app_id),
            client_id=EAM_CLIENT,
        ),
    )


def _valid(inner: Any) -> Any:
    return {"format": "agent", "report": {"os_version": "12", "extra": inner}}


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


_BASE = st.fixed_dictionaries({"format": st.just("agent"), "report": st.just({"a": 1})})
HOSTILE = st.one_of(
    # deep nesting, alone and inside an otherwise valid envelope
    st.builds(
        lambda d, k, wrap: (
            (json.dumps(_valid(0))[:-2] + _nested(d, k) + "}}") if wrap else _nested(d, k)
        ).encode(),
        st.integers(min_value=33, max_value=20_000),
        st.sampled_from(["array", "object"]),
        st.booleans(),
    ),
    # another encoding or a BOM
    st.builds(
        lambda doc, enc: doc_bytes(doc, enc),
        _BASE,
        st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig"]),
    ),
    # invalid UTF-8 inside a string
    st.builds(
        lambda junk: b'{"format": "agent", "report": {"os_version": "' + junk + b'"}}',
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]),
    ),
    # constants and numbers JSON does not have or we do not take
    st.builds(
        lambda value: b'{"format": "agent", "report": {"os_version": ' + value + b"}}",
        st.sampled_from(
            [b"NaN", b"Infinity", b"-Infinity", b"1e99999", b"9" * 5000, b"-" + b"1" * 65]
        ),
    ),
    # duplicate keys (parser differentials), NUL and lone surrogates
    st.sampled_from(
        [
            b'{"format": "agent", "format": "apple", "report": {}}',
            b'{"format": "agent", "report": {"os_version": "1", "os_version": "2"}}',
            b'{"format": "agent", "report": {"os_version": "12\\u0000"}}',
            b'{"format": "agent", "report": {"k\\u0000": 1}}',
            b'{"format": "agent", "report": {"os_version": "\\udc00"}}',
        ]
    ),
)


def doc_bytes(doc: Any, encoding: str) -> bytes:
    return json.dumps(doc).encode(encoding)


@pytest.fixture
def app_settings_extra() -> dict[str, Any]:
    # Hostile bodies are refused enrollment attempts, which the enrollment rate limit counts
    # per source: lift it here, this module is about the parser (the limit has its own tests).
    return {"enroll": EnrollSettings(limit_per_source=1_000_000, limit_per_target=1_000_000)}


@pytest.fixture
def device(app: Flask) -> EnrolledDevice:
    return enroll_device(app.extensions["posture"].core, "alice")


def _counts(app: Flask) -> dict[str, int]:
    engine = app.extensions["posture"].core.database.engine
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (devices, posture_history, used_proofs)
        }


def _device_post(app: Flask, dev: EnrolledDevice, path: str, body: bytes) -> Any:
    proof = dev.request_proof("POST", PUBLIC_URL + path, body)
    return app.test_client().post(
        path, data=body, headers={"Device-Proof": proof, "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    "path", ["/mdm/v1/checkin", "/mdm/v1/commands/c-1/result", "/mdm/v1/renew"]
)
def test_device_endpoints_answer_hostile_json_with_400(
    app: Flask, device: EnrolledDevice, path: str
) -> None:
    @FUZZ
    @given(body=HOSTILE)
    def fuzz(body: bytes) -> None:
        before = _counts(app)
        response = _device_post(app, device, path, body)
        assert response.status_code in (400, 413), response.status_code  # renew: <= 32 KiB
        assert response.json["error"] in ("invalid_json", "payload_too_large")
        after = _counts(app)
        # nothing stored (the proof's jti is rolled back with the rest)
        assert after == before, (before, after)

    fuzz()


def test_enrollment_answers_hostile_json_with_400(app: Flask) -> None:
    @FUZZ
    @given(body=HOSTILE)
    def fuzz(body: bytes) -> None:
        before = _counts(app)
        response = app.test_client().post(
            "/mdm/v1/enroll", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code in (400, 413), response.get_data()[:200]
        assert response.json["error"] in ("invalid_json", "payload_too_large")
        assert _counts(app) == before

    fuzz()


def test_posture_api_and_okta_hook_answer_hostile_json_with_400(
    app: Flask, directory: DictDirectory
) -> None:
    token = issue(app)

    @FUZZ
    @given(body=HOSTILE, target=st.sampled_from(["decision", "okta"]))
    def fuzz(body: bytes, target: str) -> None:
        if target == "decision":
            path, headers = "/api/v1/decision", bearer(token)
        else:
            path, headers = "/hooks/okta/token", {"Authorization": OKTA_SECRET}
        response = app.test_client().post(
            path, data=body, headers={**headers, "Content-Type": "application/json"}
        )
        # (The hook parses NUL in members it ignores; such a body is refused for its shape.)
        assert response.status_code == 400, (target, response.get_data()[:200])
        assert response.json["outcome"] == "block"
        assert directory.seen == []

    fuzz()


def test_entra_claims_parameter_answers_hostile_json_without_5xx(
    app: Flask, directory: DictDirectory
) -> None:
    st_ = integrations(app)
    assert st_.settings.entra is not None
    st_.entra = EntraHintValidator(st_.settings.entra.hint, http=make_client(ENTRA.transport()))
    hint = ENTRA.hint()

    @FUZZ
    @given(body=HOSTILE)
    def fuzz(body: bytes) -> None:
        directory.seen.clear()
        form = ENTRA.authorize_form(client_id=EAM_CLIENT, id_token_hint=hint)
        # A form field is text: undecodable bytes become U+FFFD (as werkzeug decodes forms).
        form["claims"] = body.decode("utf-8", errors="replace")
        response = app.test_client().post("/entra/eam/authorize", data=form)
        # 413: the form-encoded body is over max_request_bytes (deep nesting triples in size)
        assert response.status_code in (200, 400, 413)
        if response.status_code == 413:
            assert directory.seen == []
            return
        try:
            loads_bounded(form["claims"], max_depth=8, max_bytes=4096)
        except JsonInputError:
            # refused before the user is looked up, by a form_post error or a refusal page
            assert directory.seen == []
            if response.status_code == 200:
                assert hidden_fields(response.get_data(as_text=True))["error"] == "invalid_request"

    fuzz()
