"""JwksCache: caching, rotation, rate-limited refetch, stale-if-error; decode_with_jwks basics."""

from __future__ import annotations

import json

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from idp_connectors.errors import UnknownKey, UpstreamProtocolError, UpstreamUnavailable
from idp_connectors.http import make_client
from idp_connectors.jwks import JwksCache

URI = "https://idp.example/jwks"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Keys:
    def __init__(self) -> None:
        self.entries: list[dict[str, object]] = []
        self.status = 200
        self.requests = 0

    def add_rsa(self, kid: str) -> rsa.RSAPrivateKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.entries.append({**jwk, "kid": kid, "use": "sig"})
        return key

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests += 1
            if self.status != 200:
                return httpx.Response(self.status)
            return httpx.Response(200, json={"keys": self.entries})

        return httpx.MockTransport(handle)


def test_rotation_is_picked_up_after_the_refresh_interval() -> None:
    keys, clock = Keys(), Clock()
    keys.add_rsa("k1")
    cache = JwksCache(make_client(keys.transport()), URI, min_refresh_interval=60, clock=clock)
    assert cache.key("k1", "RS256") is not None
    keys.add_rsa("k2")
    with pytest.raises(UnknownKey):
        cache.key("k2", "RS256")  # fetched a moment ago: no refetch yet
    clock.now += 61
    assert cache.key("k2", "RS256") is not None
    assert keys.requests == 2


def test_key_type_must_fit_the_algorithm() -> None:
    keys = Keys()
    keys.add_rsa("k1")
    cache = JwksCache(make_client(keys.transport()), URI)
    with pytest.raises(UnknownKey):
        cache.key("k1", "ES256")


def test_no_kid_only_when_unambiguous() -> None:
    keys = Keys()
    keys.add_rsa("k1")
    cache = JwksCache(make_client(keys.transport()), URI)
    assert cache.key(None, "RS256") is not None
    keys.add_rsa("k2")
    cache2 = JwksCache(make_client(keys.transport()), URI)
    with pytest.raises(UnknownKey):
        cache2.key(None, "RS256")


def test_encryption_keys_and_junk_are_ignored() -> None:
    keys = Keys()
    keys.add_rsa("k1")
    keys.entries[0]["use"] = "enc"
    keys.entries.append({"kty": "nonsense"})
    cache = JwksCache(make_client(keys.transport()), URI)
    with pytest.raises(UpstreamProtocolError):
        cache.key("k1", "RS256")


def test_stale_keys_serve_during_an_outage_then_expire() -> None:
    keys, clock = Keys(), Clock()
    keys.add_rsa("k1")
    cache = JwksCache(make_client(keys.transport()), URI, ttl=100, max_stale=1000, clock=clock)
    cache.key("k1", "RS256")
    keys.status = 503
    clock.now += 200  # past ttl: refetch fails, last good set still serves
    assert cache.key("k1", "RS256") is not None
    clock.now += 2000  # past max_stale: fail closed
    with pytest.raises(UpstreamUnavailable):
        cache.key("k1", "RS256")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": "x"}', b'{"keys": []}', b"{}"])
def test_bad_documents(body: bytes) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    cache = JwksCache(make_client(transport), URI)
    with pytest.raises(UpstreamProtocolError):
        cache.key("k1", "RS256")


def test_ec_keys() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, json={"keys": [{**jwk, "kid": "e1"}]})
    )
    cache = JwksCache(make_client(transport), URI)
    assert cache.key("e1", "ES256") is not None
    with pytest.raises(UnknownKey):
        cache.key("e1", "RS256")
