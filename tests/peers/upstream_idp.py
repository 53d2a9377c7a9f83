"""Runs the real npm ``oidc-provider`` (tests/peers/node/upstream_idp.mjs) as an upstream IdP.

``npm ci`` installs the node project when ``node_modules`` is missing (node and npm come from
Debian: ``make system-deps``). The provider listens on an ephemeral 127.0.0.1 port; a missing
``node`` is a test failure with the install hint, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import ServiceMissing, free_port

NODE_DIR = Path(__file__).resolve().parent / "node"
_INSTALL_LOCK = threading.Lock()


def ensure_node_modules() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ServiceMissing(
            "node/npm not found: run `make system-deps` (apt-get install nodejs npm)"
        )
    with _INSTALL_LOCK:
        if (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
            return
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )


@dataclass
class UpstreamIdp:
    client_id: str
    client_secret: str
    redirect_uri: str
    account_id: str = "alice"
    port: int = 0
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UpstreamIdp:
        ensure_node_modules()
        self.port = free_port()
        env = {
            **os.environ,
            "PORT": str(self.port),
            "CLIENT_ID": self.client_id,
            "CLIENT_SECRET": self.client_secret,
            "REDIRECT_URI": self.redirect_uri,
            "ACCOUNT_ID": self.account_id,
            "NODE_ENV": "test",
        }
        self.process = subprocess.Popen(
            ["node", "upstream_idp.mjs"],
            cwd=NODE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until "ready" or the process dies
        if not line.startswith("ready "):
            self.stop()
            err = self.process.stderr.read() if self.process.stderr else ""
            raise ServiceMissing(f"upstream IdP did not start: {line!r} {err[-2000:]}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
