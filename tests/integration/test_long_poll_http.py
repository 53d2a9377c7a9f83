"""Bounded long-polls over HTTP (issue 7, finding 6): one wait per device (a new one ends the
old, which answers at once), a per-process cap answered 503 + Retry-After at once, timeouts
shortened to the server's longest wait, and a refused or unauthenticated wait changes nothing.
The store being down answers 503, not 500 (finding 12)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from mdm_core.api.checkin_views import bp, wait_registry
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import PUBLIC_URL, EnrolledDevice, enroll_device, make_core

WAIT = "/mdm/v1/commands/wait"


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(database, tmp_path, max_waits=2, max_wait_s=5)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(core: MdmCore) -> FlaskClient:
    app = Flask("long-poll-test")
    app.extensions["posture"] = SimpleNamespace(core=core)
    app.register_blueprint(bp)
    return app.test_client()


def _wait(client: FlaskClient, dev: EnrolledDevice, timeout: int = 5) -> Any:
    proof = dev.request_proof("GET", PUBLIC_URL + WAIT, b"")
    return client.get(f"{WAIT}?timeout={timeout}", headers={"Device-Proof": proof})


class Background:
    """A wait running in a thread; ``result()`` joins it."""

    def __init__(self, client: FlaskClient, dev: EnrolledDevice, timeout: int = 5) -> None:
        self.out: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(client, dev, timeout))
        self.thread.start()

    def _run(self, client: FlaskClient, dev: EnrolledDevice, timeout: int) -> None:
        started = time.monotonic()
        self.out["resp"] = _wait(client, dev, timeout)
        self.out["took"] = time.monotonic() - started

    def result(self, within: float = 10) -> tuple[Any, float]:
        self.thread.join(within)
        assert not self.thread.is_alive(), "the wait did not answer"
        return self.out["resp"], self.out["took"]


def _until(predicate: Any, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_second_wait_of_a_device_ends_the_first_at_once(
    core: MdmCore, client: FlaskClient
) -> None:
    dev = enroll_device(core, "alice")
    registry = wait_registry(core)
    first = Background(client, dev)
    _until(lambda: registry.open_count == 1)
    second = Background(client, dev)
    resp, _ = first.result()
    assert resp.status_code == 200
    # "superseded", not "timeout": the second wait ended it, not its 5 s
    assert resp.get_json() == {"pending": 0, "ended": "superseded", "timeout_s": 5}
    assert registry.open_count == 1  # the second holds the device's one slot
    core.commands.enqueue(dev.device_id, "lock", {}, created_by="admin:t")
    resp, _ = second.result()
    # queued after it opened ("command_queued") or before its first look ("pending")
    assert resp.get_json()["ended"] in ("command_queued", "pending")
    assert resp.get_json()["pending"] == 1
    assert registry.open_count == 0


def test_forty_waits_from_one_device_hold_one_slot(core: MdmCore, client: FlaskClient) -> None:
    dev = enroll_device(core, "alice")
    other = enroll_device(core, "bob")
    registry = wait_registry(core)
    waits = [Background(client, dev) for _ in range(40)]
    # Every wait but the last one standing answers promptly (superseded); the device never
    # holds more than one slot, so another device still gets one.
    _until(lambda: sum(1 for w in waits if not w.thread.is_alive()) >= 39, within=10)
    assert registry.open_count == 1
    bystander = Background(client, other, timeout=1)
    resp, _ = bystander.result()
    assert resp.status_code == 200 and resp.get_json()["ended"] == "timeout"
    core.commands.enqueue(dev.device_id, "lock", {}, created_by="admin:t")
    endings = [w.result()[0].get_json()["ended"] for w in waits]
    assert endings.count("superseded") == 39
    assert set(endings) <= {"superseded", "command_queued", "pending"}


def test_over_the_cap_is_refused_at_once_with_retry_after(
    core: MdmCore, client: FlaskClient
) -> None:
    devices = [enroll_device(core, f"user{i}") for i in range(3)]
    registry = wait_registry(core)
    held = [Background(client, d) for d in devices[:2]]
    _until(lambda: registry.open_count == 2)
    started = time.monotonic()
    refused = _wait(client, devices[2])
    assert time.monotonic() - started < 2
    assert refused.status_code == 503
    assert refused.get_json()["error"] == "long_poll_unavailable"
    assert int(refused.headers["Retry-After"]) > 0
    assert registry.open_count == 2  # the refusal took nothing and ended nothing
    assert all(w.thread.is_alive() for w in held)
    for d in devices[:2]:
        core.commands.enqueue(d.device_id, "lock", {}, created_by="admin:t")
    assert all(w.result()[0].get_json()["ended"] == "command_queued" for w in held)
    assert registry.open_count == 0


def test_an_unauthenticated_wait_ends_nothing(core: MdmCore, client: FlaskClient) -> None:
    dev = enroll_device(core, "alice")
    registry = wait_registry(core)
    held = Background(client, dev, timeout=2)
    _until(lambda: registry.open_count == 1)
    forged = client.get(f"{WAIT}?timeout=5", headers={"Device-Proof": "not.a.proof"})
    assert forged.status_code == 401
    replay_proof = dev.request_proof("GET", PUBLIC_URL + WAIT, b"")
    first = client.get(f"{WAIT}?timeout=0", headers={"Device-Proof": replay_proof})
    assert first.status_code == 200
    # held was superseded by that legitimate wait; a replay of its proof is refused
    replayed = client.get(f"{WAIT}?timeout=0", headers={"Device-Proof": replay_proof})
    assert replayed.status_code == 401
    assert held.result()[0].get_json()["ended"] == "superseded"


def test_a_long_timeout_is_shortened_not_refused(core: MdmCore, client: FlaskClient) -> None:
    dev = enroll_device(core, "alice")
    started = time.monotonic()
    resp = _wait(client, dev, timeout=60)  # what older agents ask for
    assert resp.status_code == 200
    assert resp.get_json() == {"pending": 0, "ended": "timeout", "timeout_s": 5}
    assert 4.5 <= time.monotonic() - started < 9


def test_checkin_answers_503_while_the_store_is_down(
    core: MdmCore, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = enroll_device(core, "alice")
    body = json.dumps({"format": "agent", "report": {"os_version": "12"}}).encode()

    def down(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(core.storage, "unit_of_work", down)
    for path in ("/mdm/v1/checkin", WAIT):
        method = "POST" if path.endswith("checkin") else "GET"
        data = body if method == "POST" else b""
        proof = dev.request_proof(method, PUBLIC_URL + path, data)
        resp = client.open(
            path,
            method=method,
            data=data,
            headers={"Device-Proof": proof, "Content-Type": "application/json"},
        )
        assert resp.status_code == 503, (path, resp.get_json())
        assert resp.get_json()["error"] == "store_unavailable"
        assert int(resp.headers["Retry-After"]) > 0
