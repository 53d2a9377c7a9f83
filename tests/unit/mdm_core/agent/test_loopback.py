"""The loopback login helper: exact-origin CORS, loopback Host, signed login proofs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jwt
import pytest

from mdm_core.agent.keys import DeviceKey
from mdm_core.agent.loopback import LOGIN_PROOF_PATH, LoopbackHelper

GATEWAY = "https://gw.example.com"
NONCE = "nonce-0123456789abcdef"


@pytest.fixture
def key() -> DeviceKey:
    return DeviceKey.generate()


@pytest.fixture
def helper(key: DeviceKey) -> Iterator[LoopbackHelper]:
    h = LoopbackHelper(
        key, "dev-42", GATEWAY, posture=lambda: {"format": "agent", "report": {"os_version": "12"}}
    ).start()
    try:
        yield h
    finally:
        h.stop()


def _get(helper: LoopbackHelper, origin: str | None, **params: str) -> httpx.Response:
    headers = {"Origin": origin} if origin is not None else {}
    query = {"nonce": NONCE, "aud": f"{GATEWAY}/login", **params}
    return httpx.get(f"{helper.url}{LOGIN_PROOF_PATH}", params=query, headers=headers)


def test_signs_for_the_gateway_origin(helper: LoopbackHelper, key: DeviceKey) -> None:
    resp = _get(helper, GATEWAY)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == GATEWAY
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["device_id"] == "dev-42"
    claims = jwt.decode(
        body["proof"],
        key.private_key.public_key(),
        algorithms=["ES256"],
        audience=f"{GATEWAY}/login",
        options={"require": ["aud", "nonce", "iat", "jti"]},
    )
    assert claims["nonce"] == NONCE
    assert claims["posture"]["report"] == {"os_version": "12"}
    assert jwt.get_unverified_header(body["proof"]) == {
        "alg": "ES256",
        "typ": "device-login+jwt",
        "kid": "dev-42",
    }


def test_posture_snapshot_can_be_left_out(helper: LoopbackHelper) -> None:
    resp = _get(helper, GATEWAY, posture="0")
    claims = jwt.decode(resp.json()["proof"], options={"verify_signature": False})
    assert "posture" not in claims


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "https://evil.example.com",
        "https://gw.example.com.evil.net",
        "http://gw.example.com",  # scheme differs
        "https://gw.example.com:443",  # not byte-identical
        "https://GW.example.com",
        "https://gw.example.com/",
        "null",
        "",
    ],
)
def test_refuses_any_other_origin(helper: LoopbackHelper, origin: str | None) -> None:
    resp = _get(helper, origin)
    assert resp.status_code == 403
    assert resp.json()["error"] == "origin_refused"
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "proof" not in resp.text and "dev-42" not in resp.text


def test_refuses_a_non_loopback_host_header(helper: LoopbackHelper) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own host name: refused."""
    resp = httpx.get(
        f"{helper.url}{LOGIN_PROOF_PATH}",
        params={"nonce": NONCE, "aud": GATEWAY},
        headers={"Origin": GATEWAY, "Host": f"rebind.evil.net:{helper.port}"},
    )
    assert resp.status_code == 403
    assert resp.json()["error"] == "host_refused"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"nonce": "short"}, "bad_nonce"),
        ({"nonce": "x" * 257}, "bad_nonce"),
        ({"nonce": "has spaces in it 1234"}, "bad_nonce"),
        ({"aud": "https://evil.example.com/login"}, "bad_audience"),
        ({"aud": "not a url"}, "bad_audience"),
        ({"aud": "https://user@gw.example.com/"}, "bad_audience"),
    ],
)
def test_refuses_bad_parameters(helper: LoopbackHelper, params: dict[str, str], error: str) -> None:
    resp = _get(helper, GATEWAY, **params)
    assert resp.status_code == 400
    assert resp.json()["error"] == error


def test_preflight_only_for_the_gateway(helper: LoopbackHelper) -> None:
    ok = httpx.options(
        f"{helper.url}{LOGIN_PROOF_PATH}",
        headers={
            "Origin": GATEWAY,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == GATEWAY
    assert ok.headers["Access-Control-Allow-Private-Network"] == "true"
    bad = httpx.options(f"{helper.url}{LOGIN_PROOF_PATH}", headers={"Origin": "https://x.test"})
    assert bad.status_code == 403
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_other_paths_and_methods(helper: LoopbackHelper) -> None:
    assert httpx.get(f"{helper.url}/", headers={"Origin": GATEWAY}).status_code == 404
    post = httpx.post(f"{helper.url}{LOGIN_PROOF_PATH}", headers={"Origin": GATEWAY})
    assert post.status_code == 405


@pytest.mark.parametrize("origin", ["https://gw.example.com/", "gw.example.com", "ftp://gw"])
def test_gateway_origin_must_be_an_origin(key: DeviceKey, origin: str) -> None:
    with pytest.raises(ValueError):
        LoopbackHelper(key, "dev", origin)


def test_listens_on_loopback_only(key: DeviceKey) -> None:
    with pytest.raises(ValueError):
        LoopbackHelper(key, "dev", GATEWAY, host="0.0.0.0")  # noqa: S104
