"""id_token_hint validation: the Entra EAM contract and every way a hint can be forged."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from idp_connectors.entra import EntraHintSettings, EntraHintValidator
from idp_connectors.errors import (
    BadSignature,
    DisallowedAlgorithm,
    Expired,
    MalformedToken,
    UnknownKey,
    UpstreamUnavailable,
    WrongAudience,
    WrongIssuer,
)
from idp_connectors.http import make_client
from tests.helpers.entra_double import EntraDouble


@pytest.fixture
def entra() -> EntraDouble:
    return EntraDouble()


@pytest.fixture
def validator(entra: EntraDouble) -> EntraHintValidator:
    settings = EntraHintSettings(tenant_ids=(entra.tenant_id,), app_id=entra.app_id)
    return EntraHintValidator(settings, http=make_client(entra.transport()))


def test_valid_expired_hint_is_accepted(entra: EntraDouble, validator: EntraHintValidator) -> None:
    claims = entra.hint_claims()
    hint = validator.validate(entra.hint(claims))
    assert hint.sub == claims["sub"]
    assert hint.tid == entra.tenant_id
    assert hint.oid == claims["oid"]
    assert hint.identity().subject == claims["oid"]
    assert hint.identity().issuer == f"entra:{entra.tenant_id}"


def test_jwks_is_cached(entra: EntraDouble, validator: EntraHintValidator) -> None:
    for _ in range(3):
        validator.validate(entra.hint())
    assert entra.jwks_requests == 1


def test_bad_signature(entra: EntraDouble, validator: EntraHintValidator) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(BadSignature) as caught:
        validator.validate(entra.hint(key=other))  # same kid, wrong key
    assert caught.value.reason == "token.bad_signature"


def test_tampered_payload(entra: EntraDouble, validator: EntraHintValidator) -> None:
    header, _, signature = entra.hint().split(".")
    forged = entra.hint(entra.hint_claims(sub="someone-else")).split(".")[1]
    with pytest.raises(BadSignature):
        validator.validate(f"{header}.{forged}.{signature}")


def test_wrong_issuer(entra: EntraDouble, validator: EntraHintValidator) -> None:
    other_tenant = EntraDouble(app_id=entra.app_id)
    claims = entra.hint_claims(iss=other_tenant.issuer, tid=other_tenant.tenant_id)
    with pytest.raises(WrongIssuer):
        validator.validate(entra.hint(claims))


def test_tid_must_match_issuer(entra: EntraDouble, validator: EntraHintValidator) -> None:
    with pytest.raises(WrongIssuer):
        validator.validate(
            entra.hint(entra.hint_claims(tid="00000000-0000-0000-0000-000000000000"))
        )


def test_wrong_audience(entra: EntraDouble, validator: EntraHintValidator) -> None:
    with pytest.raises(WrongAudience):
        validator.validate(
            entra.hint(entra.hint_claims(aud="11111111-2222-3333-4444-555555555555"))
        )


def test_audience_list_refused(entra: EntraDouble, validator: EntraHintValidator) -> None:
    with pytest.raises(WrongAudience):
        validator.validate(entra.hint(entra.hint_claims(aud=[entra.app_id, "other"])))


def test_alg_none(entra: EntraDouble, validator: EntraHintValidator) -> None:
    with pytest.raises(DisallowedAlgorithm):
        validator.validate(entra.unsigned_hint(entra.hint_claims()))


def test_hs256_with_public_key(entra: EntraDouble, validator: EntraHintValidator) -> None:
    with pytest.raises(DisallowedAlgorithm):
        validator.validate(entra.hs256_with_public_key(entra.hint_claims()))
    assert entra.jwks_requests == 0  # refused before any key was looked up


def test_unknown_kid_is_refused_without_hammering_entra(
    entra: EntraDouble, validator: EntraHintValidator
) -> None:
    validator.validate(entra.hint())
    for forged in ("rotated-away", "another-forged-kid", "third"):
        with pytest.raises(UnknownKey):
            validator.validate(entra.hint(kid=forged))
    assert entra.jwks_requests == 1  # refetches are rate-limited (min_refresh_interval)


@pytest.mark.parametrize("missing", ["sub", "tid", "iss", "aud", "iat", "exp"])
def test_missing_claim(entra: EntraDouble, validator: EntraHintValidator, missing: str) -> None:
    claims = entra.hint_claims()
    del claims[missing]
    with pytest.raises((MalformedToken, WrongIssuer, WrongAudience)):
        validator.validate(entra.hint(claims))


def test_iat_in_the_future(entra: EntraDouble, validator: EntraHintValidator) -> None:
    import time

    with pytest.raises(Expired):
        validator.validate(entra.hint(entra.hint_claims(iat=int(time.time()) + 3600)))


@pytest.mark.parametrize("junk", ["", "abc", "a.b", "a.b.c", "..", "x" * 5000])
def test_junk(validator: EntraHintValidator, junk: str) -> None:
    with pytest.raises(MalformedToken):
        validator.validate(junk)


def test_jwks_unreachable_fails_closed(entra: EntraDouble, validator: EntraHintValidator) -> None:
    entra.jwks_status = 503
    with pytest.raises(UpstreamUnavailable):
        validator.validate(entra.hint())


def test_jwks_network_error_fails_closed(entra: EntraDouble) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    settings = EntraHintSettings(
        tenant_ids=(entra.tenant_id,), app_id=entra.app_id, leeway=timedelta(seconds=1)
    )
    validator = EntraHintValidator(settings, http=make_client(httpx.MockTransport(broken)))
    with pytest.raises(UpstreamUnavailable):
        validator.validate(entra.hint())


def test_refusals_are_counted(entra: EntraDouble, validator: EntraHintValidator) -> None:
    from prometheus_client import REGISTRY

    def count(reason: str) -> float:
        value = REGISTRY.get_sample_value(
            "posture_external_token_refusals_total", {"kind": "entra_hint", "reason": reason}
        )
        return value or 0.0

    before = count("token.bad_algorithm")
    with pytest.raises(DisallowedAlgorithm):
        validator.validate(entra.unsigned_hint(entra.hint_claims()))
    assert count("token.bad_algorithm") == before + 1


# ---- issue 7 finding 10: the hint's age is bounded by iat (exp is not checked) ----------------

YEAR = 365 * 24 * 3600


def _at(entra: EntraDouble, now: float, **settings: object) -> EntraHintValidator:
    config = EntraHintSettings(tenant_ids=(entra.tenant_id,), app_id=entra.app_id, **settings)  # type: ignore[arg-type]
    return EntraHintValidator(config, http=make_client(entra.transport()), clock=lambda: now)


def test_hint_issued_a_year_ago_is_refused(entra: EntraDouble) -> None:
    import time

    now = time.time()
    old = entra.hint_claims(iat=int(now) - YEAR, nbf=int(now) - YEAR, exp=int(now) - YEAR + 300)
    with pytest.raises(Expired) as caught:
        _at(entra, now).validate(entra.hint(old))
    assert "too long ago" in str(caught.value)


def test_fresh_but_expired_hint_is_accepted(entra: EntraDouble) -> None:
    import time

    now = time.time()
    claims = entra.hint_claims(iat=int(now) - 30, nbf=int(now) - 30, exp=int(now) - 10)
    assert _at(entra, now).validate(entra.hint(claims)).sub == claims["sub"]


def test_hint_age_bound_is_max_age_plus_leeway(entra: EntraDouble) -> None:
    import time

    now = float(int(time.time()))
    validator = _at(entra, now, max_age=timedelta(minutes=10), leeway=timedelta(seconds=60))
    inside = entra.hint_claims(iat=int(now) - 660, nbf=int(now) - 660)
    assert validator.validate(entra.hint(inside)).tid == entra.tenant_id
    outside = entra.hint_claims(iat=int(now) - 662, nbf=int(now) - 662)
    with pytest.raises(Expired):
        validator.validate(entra.hint(outside))


def test_max_age_is_configurable(entra: EntraDouble) -> None:
    import time

    now = time.time()
    claims = entra.hint_claims(iat=int(now) - 600, nbf=int(now) - 600)
    with pytest.raises(Expired):
        _at(entra, now, max_age=timedelta(minutes=2)).validate(entra.hint(claims))
    assert _at(entra, now, max_age=timedelta(minutes=20)).validate(entra.hint(claims))


def test_iat_in_the_future_beyond_leeway_is_refused(entra: EntraDouble) -> None:
    import time

    now = time.time()
    within = entra.hint_claims(iat=int(now) + 30, nbf=int(now) - 30)
    assert _at(entra, now).validate(entra.hint(within))  # inside the 60 s leeway
    beyond = entra.hint_claims(iat=int(now) + 120, nbf=int(now) - 30)
    with pytest.raises(Expired):
        _at(entra, now).validate(entra.hint(beyond))


@pytest.mark.parametrize("iat", ["1700000000", True, None, [1]])
def test_non_numeric_iat_is_refused(entra: EntraDouble, iat: object) -> None:
    claims = entra.hint_claims(iat=iat)
    with pytest.raises((MalformedToken, Expired)):
        _at(entra, __import__("time").time()).validate(entra.hint(claims))


def test_max_age_must_be_positive() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        EntraHintSettings(
            tenant_ids=("t",), app_id="11111111-2222-3333-4444-555555555555", max_age=timedelta(0)
        )
