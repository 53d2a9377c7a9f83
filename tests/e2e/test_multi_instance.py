"""Two ``posture serve`` instances on one PostgreSQL and one Redis (issue 10, item 3).

Both run with their default flags (granian, default workers) on one config pointing at a
private PostgreSQL and Redis (:mod:`tests.e2e.cluster`). The device checks in on A only;
B is asked by every channel right after A's check-in response returned:

- a degrading (jailbroken: critical, quarantine) check-in on A makes B deny at once on the
  posture API, an OIDC login's device step, the refresh of a token issued before, and
  introspection (``active: false``) of the access token issued before;
- entries B cached before a Redis outage are not trusted after it: with Redis down no
  decision is answered (503, never allow); the device degrades on A meanwhile (check-ins
  need only PostgreSQL; the events wait in the outbox); when Redis is back (empty) B's very
  next decision denies. B's bus reader drops its cache on reconnect, and the per-decision SQL
  version check would deny even without it: ``tests/e2e/test_read_model_two_processes.py``
  proves that part with no shared bus at all (it fails if versions are not checked).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.cluster import (
    Cluster,
    check_in,
    cluster,
    decide,
    introspect,
    login_device_step,
    oidc_login,
    refresh,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path) as c:
        yield c


def _outcome(c: Cluster, url: str, dev: object) -> str:
    res = decide(c, url, dev)  # type: ignore[arg-type]
    assert res.status_code == 200, f"{res.status_code} {res.text}\n{c.logs()}"
    return str(res.json()["outcome"])


def test_a_degrading_check_in_on_a_is_denied_by_b_on_every_channel(two: Cluster) -> None:
    c = two
    dev, = c.enroll(1)  # fmt: skip
    assert check_in(c, c.a, dev, DeviceTraits()).status_code == 200
    # B is warm: it allowed the device on the posture API and issued tokens after a login.
    for _ in range(3):
        assert _outcome(c, c.b, dev) in {"allow", "warn"}
    tokens = oidc_login(c.b, dev)
    assert "refresh_token" in tokens, tokens
    assert introspect(c.b, tokens["access_token"]).json()["active"] is True
    fresh = refresh(c.b, tokens["refresh_token"])
    assert fresh.status_code == 200, fresh.text
    tokens = fresh.json()

    answer = check_in(c, c.a, dev, DeviceTraits(jailbroken=True))
    assert answer.status_code == 200, answer.text  # returned: committed on A

    decision = decide(c, c.b, dev).json()
    assert decision["outcome"] == "block", decision
    codes = {r["code"] for r in decision["reasons"]}
    assert "device_quarantined" in codes, codes
    step = login_device_step(c.b, dev)
    assert step.status_code == 403 and 'data-outcome="block"' in step.text, step.text[:2000]
    assert refresh(c.b, tokens["refresh_token"]).json().get("error") == "invalid_grant"
    assert introspect(c.b, tokens["access_token"]).json() == {"active": False}


def test_entries_cached_before_a_redis_outage_are_not_trusted_after_it(two: Cluster) -> None:
    c = two
    dev, = c.enroll(1)  # fmt: skip
    assert check_in(c, c.a, dev, DeviceTraits()).status_code == 200
    for _ in range(3):
        assert _outcome(c, c.b, dev) in {"allow", "warn"}  # B's read model holds the device

    c.redis.pause()
    down = decide(c, c.b, dev)
    assert down.status_code == 503, down.text  # no nonce, no decision: never an allow
    assert down.headers["content-type"].startswith("application/json")
    # Check-ins need only PostgreSQL (their proofs' replay records live in the check-in's
    # transaction): the degradation commits on A, its events wait in the outbox, no bus.
    res = check_in(c, c.a, dev, DeviceTraits(jailbroken=True))
    assert res.status_code == 200, res.text + c.logs()
    c.redis.resume()  # back, and empty: B's bus reader lost its position

    decision = decide(c, c.b, dev)  # the very next decision after Redis answered again
    assert decision.status_code == 200, decision.text + c.logs()
    assert decision.json()["outcome"] == "block", decision.json()
    for instance in c.instances:
        assert instance.alive(), c.logs()
