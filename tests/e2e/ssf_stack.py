"""A real ``posture serve`` (default flags: granian, two workers, SQLite in the data directory)
configured as a Shared Signals transmitter, a set-up app on the same data directory (to
enroll devices and write outbox events the way the core's services do), and the independent
Node receiver (``tests/peers/node/ssf_receiver.mjs``) reading its stdout on a thread."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from flask import Flask

from mdm_core.bus.events import DomainEvent
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import create_app
from posture_gateway.settings import load_settings
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.services import free_port
from tests.unit.posture_gateway.signals.conftest import SECRET, write_clients

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "peers" / "node"
POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]
RECEIVER = "node-rx"
AUDIENCE = "urn:example:node-rx"

__all__ = ["Stack", "stack", "NodeReceiver", "RECEIVER", "AUDIENCE", "SECRET"]


def _config(tmp_path: Path, extra_receivers: list[dict[str, Any]]) -> Path:
    clients = write_clients(tmp_path / "clients.yaml", (RECEIVER, "other-rp"))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "oidc": {"clients_file": str(clients)},
                "signals": {
                    "receivers": [{"client_id": RECEIVER, "audience": AUDIENCE}, *extra_receivers],
                    # Short waits so that a retry or a lease expiry comes soon in a test.
                    "push": {
                        "backoff_base": "200ms",
                        "backoff_max": "1s",
                        "timeout": "1s",
                        "connect_timeout": "1s",
                        "lease": "3s",
                    },
                    "sweep_interval": "300ms",
                    "poll_max_wait": "5s",
                },
            }
        )
    )
    return config


class NodeReceiver:
    """The Node receiver process; its JSON lines land in a queue."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.next(lambda m: "ready" in m, timeout=60)
        assert self.ready["ready"], self.ready

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(json.loads(line))

    def next(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        """The next line matching ``match`` (earlier non-matching lines are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line from the receiver; saw {self.seen}")
            try:
                message = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(message)
            if match(message):
                return message

    def next_set(self, event_type: str, timeout: float = 30) -> dict[str, Any]:
        return self.next(lambda m: event_type in (m.get("set") or {}).get("events", {}), timeout)

    def send(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.next(lambda m: m.get("reply") == command["cmd"])

    @property
    def stream_id(self) -> str:
        return str(self.ready["stream_id"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Stack:
    url: str
    tmp_path: Path
    env: dict[str, str]
    setup: Flask
    server: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def core(self) -> MdmCore:
        core = self.setup.extensions["posture"].core
        assert isinstance(core, MdmCore)
        return core

    def start_server(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        self.log = self.tmp_path / f"server-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.server = subprocess.Popen(
                [*POSTURE, "serve", "--port", port],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: SIGKILL takes the workers too
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.server.poll() is None, self.log.read_text(errors="replace")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(self.log.read_text(errors="replace"))

    def kill_server(self) -> None:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait(timeout=15)
        self.server = None

    def stop_server(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=15)
            self.server = None

    def receiver(self, **env: str) -> NodeReceiver:
        proc = subprocess.Popen(
            ["node", str(NODE_DIR / "ssf_receiver.mjs")],
            cwd=NODE_DIR,
            env={
                **os.environ,
                "TRANSMITTER": self.url,
                "CLIENT_ID": RECEIVER,
                "CLIENT_SECRET": SECRET,
                "AUDIENCE": AUDIENCE,
                **env,
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return NodeReceiver(proc)

    def device(self, email: str = "alice@example.com") -> EnrolledDevice:
        self.core.directory.upsert_user(
            DirectoryUser(
                id="u-alice",
                username="alice",
                active=True,
                source="local",
                updated_at=datetime.now(UTC),
                email=email,
            )
        )
        return enroll_device(
            self.core, "u-alice", ownership=Ownership.CORPORATE, platform=Platform.ANDROID
        )

    def check_in(self, dev: EnrolledDevice, traits: DeviceTraits) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for fmt, report in native_reports("android", "S-" + dev.device_id[:6], "corporate", traits):
            body = json.dumps({"format": fmt, "report": report}).encode()
            proof = dev.request_proof("POST", self.url + "/mdm/v1/checkin", body)
            res = httpx.post(
                self.url + "/mdm/v1/checkin",
                content=body,
                headers={"Device-Proof": proof, "Content-Type": "application/json"},
                timeout=30,
            )
            assert res.status_code == 200, res.text
            answer = res.json()
        return answer

    def add_events(self, *events: DomainEvent) -> None:
        with self.core.storage.unit_of_work() as uow:
            uow.outbox.add(list(events))


@contextmanager
def stack(tmp_path: Path, extra_receivers: list[dict[str, Any]] | None = None) -> Iterator[Stack]:
    config = _config(tmp_path, extra_receivers or [])
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(
        POSTURE_DATA_DIR=str(tmp_path / "data"),
        POSTURE_DEV_MODE="true",
        POSTURE_CONFIG=str(config),
        POSTURE_PUBLIC_URL=url,
        PYTHONPATH=str(ROOT),
    )
    # The test's own app on the same data directory: set-up only (never serves, never delivers).
    settings = load_settings(
        config, environ={k: v for k, v in env.items() if k.startswith("POSTURE_")}
    )
    setup = create_app(settings)
    st = Stack(url=url, tmp_path=tmp_path, env=env, setup=setup)
    try:
        st.start_server()
        yield st
    finally:
        st.stop_server()
        setup.extensions["posture_signals"].close()
        setup.extensions["posture"].core.close()
