"""JwksCache against a real local server: caching, rotation, refetch limits, stale-if-error."""

from __future__ import annotations

import json

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from idp_connectors.errors import UnknownKey, UpstreamProtocolError, UpstreamUnavailable
from idp_connectors.jwks import JwksCache
from tests.helpers.json_server import JsonServer
from tests.services import free_port

PATH = "/jwks"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rsa_entry(kid: str) -> dict[str, object]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid}


def serve(server: JsonServer, *entries: dict[str, object], status: int = 200) -> None:
    server.routes[PATH] = (status, {"keys": list(entries)})


def test_cached_until_ttl(json_server: JsonServer, http: httpx.Client) -> None:
    clock = Clock()
    serve(json_server, rsa_entry("k1"))
    cache = JwksCache(http, json_server.url(PATH), ttl=100, clock=clock)
    for _ in range(5):
        cache.key("k1", "RS256")
    assert json_server.hits[PATH] == 1
    clock.now += 101
    cache.key("k1", "RS256")
    assert json_server.hits[PATH] == 2


def test_rotation_is_picked_up_after_the_refresh_interval(
    json_server: JsonServer, http: httpx.Client
) -> None:
    clock = Clock()
    k1 = rsa_entry("k1")
    serve(json_server, k1)
    cache = JwksCache(http, json_server.url(PATH), min_refresh_interval=60, clock=clock)
    cache.key("k1", "RS256")
    serve(json_server, k1, rsa_entry("k2"))
    with pytest.raises(UnknownKey):
        cache.key("k2", "RS256")  # fetched a moment ago: no refetch yet
    clock.now += 61
    assert cache.key("k2", "RS256") is not None
    assert json_server.hits[PATH] == 2


def test_forged_kids_do_not_hammer_the_issuer(json_server: JsonServer, http: httpx.Client) -> None:
    clock = Clock()
    serve(json_server, rsa_entry("k1"))
    cache = JwksCache(http, json_server.url(PATH), min_refresh_interval=60, clock=clock)
    for n in range(20):
        with pytest.raises(UnknownKey):
            cache.key(f"forged-{n}", "RS256")
    assert json_server.hits[PATH] == 1


def test_key_type_must_fit_the_algorithm(json_server: JsonServer, http: httpx.Client) -> None:
    serve(json_server, rsa_entry("k1"))
    with pytest.raises(UnknownKey):
        JwksCache(http, json_server.url(PATH)).key("k1", "ES256")


def test_pinned_alg_must_match(json_server: JsonServer, http: httpx.Client) -> None:
    serve(json_server, {**rsa_entry("k1"), "alg": "RS512"})
    with pytest.raises(UnknownKey):
        JwksCache(http, json_server.url(PATH)).key("k1", "RS256")


def test_no_kid_only_when_unambiguous(json_server: JsonServer, http: httpx.Client) -> None:
    serve(json_server, rsa_entry("k1"))
    assert JwksCache(http, json_server.url(PATH)).key(None, "RS256") is not None
    serve(json_server, rsa_entry("k1"), rsa_entry("k2"))
    with pytest.raises(UnknownKey):
        JwksCache(http, json_server.url(PATH)).key(None, "RS256")


def test_encryption_keys_and_junk_are_ignored(json_server: JsonServer, http: httpx.Client) -> None:
    serve(json_server, {**rsa_entry("k1"), "use": "enc"}, {"kty": "nonsense"}, "junk")  # type: ignore[arg-type]
    with pytest.raises(UpstreamProtocolError):
        JwksCache(http, json_server.url(PATH)).key("k1", "RS256")


def test_stale_keys_serve_during_an_outage_then_expire(
    json_server: JsonServer, http: httpx.Client
) -> None:
    clock = Clock()
    serve(json_server, rsa_entry("k1"))
    cache = JwksCache(http, json_server.url(PATH), ttl=100, max_stale=1000, clock=clock)
    cache.key("k1", "RS256")
    json_server.routes[PATH] = (503, {"error": "down"})
    clock.now += 200  # past ttl: refetch fails, the last good set still serves
    assert cache.key("k1", "RS256") is not None
    clock.now += 2000  # past max_stale: fail closed
    with pytest.raises(UpstreamUnavailable):
        cache.key("k1", "RS256")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": "x"}', b'{"keys": []}', b"{}"])
def test_bad_documents(json_server: JsonServer, http: httpx.Client, body: bytes) -> None:
    json_server.routes[PATH] = (200, body)
    with pytest.raises(UpstreamProtocolError):
        JwksCache(http, json_server.url(PATH)).key("k1", "RS256")


@pytest.mark.parametrize(
    ("status", "error"), [(404, UpstreamProtocolError), (500, UpstreamUnavailable)]
)
def test_http_errors(
    json_server: JsonServer, http: httpx.Client, status: int, error: type[Exception]
) -> None:
    json_server.routes[PATH] = (status, {"error": "x"})
    with pytest.raises(error):
        JwksCache(http, json_server.url(PATH)).key("k1", "RS256")


def test_nobody_listening(http: httpx.Client) -> None:
    with pytest.raises(UpstreamUnavailable):
        JwksCache(http, f"http://127.0.0.1:{free_port()}/jwks").key("k1", "RS256")


def test_ec_keys(json_server: JsonServer, http: httpx.Client) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    serve(json_server, {**jwk, "kid": "e1"})
    cache = JwksCache(http, json_server.url(PATH))
    assert cache.key("e1", "ES256") is not None
    with pytest.raises(UnknownKey):
        cache.key("e1", "RS256")
