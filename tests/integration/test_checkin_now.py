"""Asking a device to check in now (issue 10, item 5): the long-poll ends with
``checkin_requested``, a request that lands before the wait opens is not lost, requests are
rate-limited per device and audited, and on a shared Redis bus a request made by one process
ends the wait held by another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mdm_core.api.checkin_views import bp
from mdm_core.device.checkin_now import AUDIT_ACTION, CheckinNow, CheckinNowRefused
from mdm_core.redis_backends.bus import RedisEventBus
from mdm_core.redis_backends.client import connect_redis
from mdm_core.runtime import MdmCore, build_core
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import (
    PUBLIC_URL,
    EnrolledDevice,
    core_config,
    enroll_device,
    make_core,
)

WAIT = "/mdm/v1/commands/wait"


def _client(core: MdmCore) -> FlaskClient:
    app = Flask("checkin-now-test")
    app.extensions["posture"] = SimpleNamespace(core=core)
    app.register_blueprint(bp)
    return app.test_client()


def _wait(client: FlaskClient, dev: EnrolledDevice, timeout: int = 10) -> Any:
    proof = dev.request_proof("GET", PUBLIC_URL + WAIT, b"")
    return client.get(f"{WAIT}?timeout={timeout}", headers={"Device-Proof": proof})


def _in_background(
    client: FlaskClient, dev: EnrolledDevice
) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        out["resp"] = _wait(client, dev)
        out["took"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _until(predicate: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(database, tmp_path, max_waits=2, max_wait_s=10)
    try:
        yield built
    finally:
        built.close()


def _audit(core: MdmCore, device_id: str) -> list[str]:
    with core.storage.unit_of_work() as uow:
        entries = uow.audit.recent(device_id, limit=50)
    return [e.outcome for e in entries if e.action == AUDIT_ACTION]


def test_a_request_ends_the_device_wait_at_once_and_is_audited(core: MdmCore) -> None:
    client = _client(core)
    dev = enroll_device(core, "alice")
    thread, out = _in_background(client, dev)
    registry = core.extras["long_poll"]
    _until(lambda: registry.open_count == 1)
    CheckinNow(core.bus, core.storage, core.rate_limiter).request(dev.device_id, actor="user:a")
    thread.join(10)
    assert not thread.is_alive()
    assert out["resp"].status_code == 200
    assert out["resp"].json["ended"] == "checkin_requested"
    assert out["took"] < 8  # long before the 10 s timeout
    assert _audit(core, dev.device_id) == ["sent"]


def test_a_request_before_the_wait_opens_ends_the_next_wait(core: MdmCore) -> None:
    client = _client(core)
    dev = enroll_device(core, "alice")
    CheckinNow(core.bus, core.storage, core.rate_limiter).request(dev.device_id, actor="user:a")
    answer = _wait(client, dev)
    assert answer.json["ended"] == "checkin_requested"
    # ... once: the wait after it waits again (here: until its short timeout).
    assert _wait(client, dev, timeout=1).json["ended"] == "timeout"


def test_requests_are_rate_limited_per_device(core: MdmCore) -> None:
    dev, other = enroll_device(core, "alice"), enroll_device(core, "alice")
    sender = CheckinNow(core.bus, core.storage, core.rate_limiter, limit=2)
    sender.request(dev.device_id, actor="user:a")
    sender.request(dev.device_id, actor="user:a")
    with pytest.raises(CheckinNowRefused):
        sender.request(dev.device_id, actor="user:a")
    sender.request(other.device_id, actor="user:a")  # another device has its own budget
    assert _audit(core, dev.device_id) == ["refused", "sent", "sent"]


@pytest.mark.redis
def test_on_a_shared_redis_bus_a_request_in_one_process_ends_the_wait_in_another(
    database: Database, tmp_path: Path, redis_url: str
) -> None:
    a = _core_on_redis(database, tmp_path, redis_url)  # two processes' cores, one data dir
    b = _core_on_redis(database, tmp_path, redis_url)
    try:
        dev = enroll_device(a, "alice")
        thread, out = _in_background(_client(a), dev)  # A holds the wait
        _until(lambda: a.extras["long_poll"].open_count == 1)
        CheckinNow(b.bus, b.storage, b.rate_limiter).request(dev.device_id, actor="user:a")
        thread.join(10)
        assert not thread.is_alive()
        assert out["resp"].json["ended"] == "checkin_requested"
    finally:
        a.close()
        b.close()


def _core_on_redis(database: Database, tmp: Path, redis_url: str) -> MdmCore:
    config = core_config(database, tmp, max_waits=2, max_wait_s=10, redis_url=redis_url)
    return build_core(config, bus=RedisEventBus(connect_redis(redis_url)))


def test_on_the_embedded_default_a_request_from_another_worker_ends_the_wait(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """Two workers on one SQLite file, each with its own in-process bus: the request made by
    one reaches the wait held by the other through its audit entry (within about a second)."""
    a = make_core(sqlite_database, tmp_path, max_waits=2, max_wait_s=10)
    b = make_core(sqlite_database, tmp_path, max_waits=2, max_wait_s=10)
    try:
        assert a.bus is not b.bus
        dev = enroll_device(a, "alice")
        thread, out = _in_background(_client(a), dev)  # A holds the wait
        _until(lambda: a.extras["long_poll"].open_count == 1)
        CheckinNow(b.bus, b.storage, b.rate_limiter).request(dev.device_id, actor="user:a")
        thread.join(10)
        assert not thread.is_alive()
        assert out["resp"].json["ended"] == "checkin_requested"
        assert out["took"] < 8  # not the 10 s timeout
    finally:
        a.close()
        b.close()
