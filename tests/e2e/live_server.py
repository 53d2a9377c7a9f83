"""A real server for end-to-end tests: the app factory under werkzeug's threaded WSGI server
in a thread, on an ephemeral loopback port, over SQLite in the test's temp directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from mdm_core.runtime import MdmCore
from posture_gateway.app import create_app
from posture_gateway.settings import Settings
from tests.services import free_port

__all__ = ["LiveServer", "live_server", "POLICY_DIR"]

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"


@dataclass
class LiveServer:
    url: str
    app: Flask
    server: BaseWSGIServer

    @property
    def core(self) -> MdmCore:
        core = self.app.extensions["posture"].core
        assert isinstance(core, MdmCore)
        return core


@contextmanager
def live_server(tmp_path: Path, database_url: str | None = None) -> Iterator[LiveServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=tmp_path / "server",
        database_url=database_url,
        public_url=url,
        policy_dir=POLICY_DIR,
        dev_mode=True,
    )
    app = create_app(settings)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(url=url, app=app, server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        app.extensions["posture"].core.close()
