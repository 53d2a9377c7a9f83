"""Push delivery of one SET (RFC 8935) and the retry schedule.

:func:`push_set` POSTs the compact SET as ``application/secevent+jwt`` (section 2.1) with the
stream's ``authorization_header`` and classifies the answer:

- ``202`` -> delivered (section 2.2);
- ``400`` with the section 2.3 error JSON (``err``, ``description``) -> permanent failure,
  recorded with the receiver's words (the same SET would be refused again);
- ``5xx``, ``408``, ``429``, ``401``/``403`` (credentials a stream update can fix), timeouts and
  connection errors -> retry;
- anything else (another 2xx, a redirect, other 4xx) -> permanent failure.

:func:`retry_delay` is exponential backoff with jitter: ``base * 2**(attempt-1)`` capped at
``cap``, then a uniform draw in its upper half (no synchronised retry storms, never sooner
than half the nominal delay).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import httpx

__all__ = ["PushOutcome", "push_set", "retry_delay", "CONTENT_TYPE"]

CONTENT_TYPE = "application/secevent+jwt"
_RETRY_STATUSES = frozenset({401, 403, 408, 425, 429})


@dataclass(frozen=True, slots=True)
class PushOutcome:
    result: Literal["delivered", "retry", "failed"]
    detail: str = ""


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        err, description = body.get("err"), body.get("description")
        if isinstance(err, str):
            return f"HTTP {response.status_code} {err}: {description}"[:500]
    return f"HTTP {response.status_code}"


def push_set(
    http: httpx.Client, url: str, token: str, authorization_header: str | None
) -> PushOutcome:
    headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/json"}
    if authorization_header:
        headers["Authorization"] = authorization_header
    try:
        response = http.post(url, content=token.encode("ascii"), headers=headers)
    except httpx.TimeoutException as exc:
        return PushOutcome("retry", f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return PushOutcome("retry", f"transport error: {type(exc).__name__}")
    status = response.status_code
    if status == 202:
        return PushOutcome("delivered")
    if status >= 500 or status in _RETRY_STATUSES:
        return PushOutcome("retry", _error_text(response))
    return PushOutcome("failed", _error_text(response))


def retry_delay(
    attempt: int, base: timedelta, cap: timedelta, rand: random.Random | None = None
) -> timedelta:
    """Delay before attempt ``attempt + 1`` after ``attempt`` failed (``attempt`` >= 1)."""
    nominal = min(cap.total_seconds(), base.total_seconds() * 2 ** min(attempt - 1, 30))
    draw = (rand or random).uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
    return timedelta(seconds=nominal * draw)
