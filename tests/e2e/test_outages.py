"""Redis or PostgreSQL stopped under two running ``posture serve`` instances (issue 10, item 3).

The real servers are stopped mid-run (Redis killed, PostgreSQL stopped ``-m immediate``) and
started again on the same port (and data directory). While one is down, on both instances:
no decision, no login and no token — the posture API answers 503 JSON, a login answers the
error page (503 HTML), the token endpoint issues nothing; every answer comes within a bound
(no request hangs); ``/readyz`` says 503, ``/healthz`` stays 200 (the process is alive: no
restart loop). When the server is back, service resumes by itself: no restart of
``posture serve``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.sql.database import IDLE_PING_AFTER_S
from tests.e2e.cluster import (
    Cluster,
    check_in,
    cluster,
    decide,
    introspect,
    oidc_login,
    refresh,
    start_login,
)
from tests.helpers.enrolled import EnrolledDevice

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

#: The longest any answer may take while a server is down (generous: a slow shared machine).
BOUND_S = 20.0


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Cluster]:
    # Durable PostgreSQL: the outage is an immediate stop (a crash), and with
    # synchronous_commit off a crash loses the last commits -- the token issued just before
    # it among them, which then reads "unknown" once the server is back.
    with cluster(tmp_path, durable=True) as c:
        yield c


def _timed(call: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.monotonic()
    res = call()
    assert time.monotonic() - started < BOUND_S, "an answer took too long while a server was down"
    return res


def _eventually(check: Callable[[], bool], c: Cluster, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {timeout} s\n{c.logs()}")


def _login_refused(url: str) -> None:
    """A browser login while a backend is down: an error page (503), never a code."""
    http = httpx.Client(timeout=BOUND_S)
    try:
        res = _timed(lambda: http.get(url + "/readyz"))
        assert res.status_code == 503, res.text
        try:
            login = start_login(url)
        except AssertionError as exc:  # refused before the device page: that is the point
            assert "503" in str(exc) or "unavailable" in str(exc).lower(), exc
            return
        login.http.close()
        raise AssertionError("a login reached the device page with a backend down")
    finally:
        http.close()


def _browser_error(url: str) -> httpx.Response:
    return _timed(
        lambda: httpx.get(
            url + "/oauth/authorize",
            params={"client_id": "payroll", "response_type": "code", "scope": "openid",
                    "redirect_uri": "https://app.example/cb", "code_challenge": "x" * 43,
                    "code_challenge_method": "S256", "nonce": "n", "state": "s"},
            timeout=BOUND_S,
        )
    )  # fmt: skip


def _down_everywhere(c: Cluster, dev: EnrolledDevice, tokens: dict[str, str]) -> None:
    try:
        _down_on_each(c, dev, tokens)
    except (AssertionError, httpx.HTTPError) as exc:
        raise AssertionError(f"{exc}\n{c.logs()}") from exc


def _down_on_each(c: Cluster, dev: EnrolledDevice, tokens: dict[str, str]) -> None:
    for url in (c.a, c.b):
        assert _timed(lambda u=url: httpx.get(u + "/healthz", timeout=BOUND_S)).status_code == 200
        ready = _timed(lambda u=url: httpx.get(u + "/readyz", timeout=BOUND_S))
        assert ready.status_code == 503, ready.text
        decision = _timed(lambda u=url: decide(c, u, dev))
        assert decision.status_code == 503, decision.text
        assert decision.headers["content-type"].startswith("application/json"), decision.text
        page = _browser_error(url)
        assert page.status_code == 503 and "text/html" in page.headers["content-type"], page.text
        assert "unavailable" in page.text.lower(), page.text[:2000]
        refreshed = _timed(lambda u=url: refresh(u, tokens["refresh_token"]))
        assert refreshed.status_code >= 400 and "access_token" not in refreshed.text
        # Introspection issues nothing: it answers from PostgreSQL, or 503 when that is down.
        looked = _timed(lambda u=url: introspect(u, tokens["access_token"]))
        assert looked.status_code in (200, 503), looked.text
        cc = _timed(
            lambda u=url: httpx.post(
                u + "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "posture.decide"},
                auth=("okta-idp", "okta-idp-secret-" + "o" * 32),
                timeout=BOUND_S,
            )
        )
        assert cc.status_code >= 400 and "access_token" not in cc.text, cc.text


def _logs_in(url: str, dev: EnrolledDevice) -> bool:
    try:
        tokens = oidc_login(url, dev)
    except AssertionError:
        return False
    return refresh(url, tokens["refresh_token"]).status_code == 200


def _back_everywhere(c: Cluster, dev: EnrolledDevice) -> None:
    """Service resumes by itself: each instance gets ready, decides and logs in again (a
    request in flight as the server returns may still fail), then keeps answering: every
    request after that is answered."""
    for url in (c.a, c.b):
        _eventually(
            lambda u=url: httpx.get(u + "/readyz", timeout=5).status_code == 200, c, "ready"
        )
        _eventually(lambda u=url: decide(c, u, dev).status_code == 200, c, f"a decision on {url}")
        _eventually(lambda u=url: _logs_in(u, dev), c, f"a login on {url}")
    for url in (c.a, c.b):  # steady again: every answer now is a real decision
        for _ in range(4):
            answer = decide(c, url, dev)
            assert answer.status_code == 200, answer.text + c.logs()
            assert answer.json()["outcome"] in {"allow", "warn"}
        assert _logs_in(url, dev), c.logs()
    for instance in c.instances:
        assert instance.alive(), c.logs()


def _warm(c: Cluster) -> tuple[EnrolledDevice, dict[str, str]]:
    dev, = c.enroll(1)  # fmt: skip
    assert check_in(c, c.a, dev, DeviceTraits()).status_code == 200
    c.api_token()  # fetched while everything is up
    tokens = oidc_login(c.b, dev)
    assert decide(c, c.b, dev).json()["outcome"] in {"allow", "warn"}
    return dev, tokens


def test_redis_stopped_then_started_again(two: Cluster) -> None:
    c = two
    dev, tokens = _warm(c)
    spare, = c.enroll(1)  # fmt: skip
    assert check_in(c, c.a, spare, DeviceTraits()).status_code == 200
    c.redis.pause()
    try:
        _down_everywhere(c, dev, tokens)
        # A degradation during the outage still ends the tokens everywhere: check-ins and
        # revocations need only PostgreSQL, and introspection reads it.
        assert check_in(c, c.a, dev, DeviceTraits(jailbroken=True)).status_code == 200
        for url in (c.a, c.b):
            assert introspect(url, tokens["access_token"]).json() == {"active": False}
    finally:
        c.redis.resume()
    _back_everywhere(c, spare)


def test_postgres_stopped_then_started_again(two: Cluster) -> None:
    c = two
    dev, tokens = _warm(c)
    c.pg.pause()
    down_at = time.monotonic()
    try:
        _down_everywhere(c, dev, tokens)
        assert check_in(c, c.a, dev, DeviceTraits()).status_code == 503
    finally:
        # The outage this test is about lasts longer than IDLE_PING_AFTER_S: every pooled
        # connection left from before it is then pinged, and none fails a request afterwards.
        time.sleep(max(0.0, down_at + IDLE_PING_AFTER_S + 0.5 - time.monotonic()))
        c.pg.resume()
    _back_everywhere(c, dev)
