"""The transmitter's bearer check when the token store cannot answer: 503, never a pass."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from posture_gateway.signals.auth import AuthFailure, authenticate
from posture_gateway.signals.settings import SCOPE_READ, SignalsSettings


class _Verifier:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def verify_access_token(self, token: str) -> dict[str, Any]:
        raise self.error


def test_a_store_outage_is_503_not_a_refused_or_accepted_token() -> None:
    outage = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    with pytest.raises(AuthFailure) as info:
        authenticate("Bearer abc.def.ghi", _Verifier(outage), SignalsSettings(), SCOPE_READ)
    assert (info.value.status, info.value.error) == (503, "temporarily_unavailable")


def test_a_bad_token_is_still_401() -> None:
    with pytest.raises(AuthFailure) as info:
        authenticate(
            "Bearer abc.def.ghi", _Verifier(ValueError("bad")), SignalsSettings(), SCOPE_READ
        )
    assert (info.value.status, info.value.error) == (401, "invalid_token")
