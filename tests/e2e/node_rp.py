"""The independent relying party (npm openid-client, tests/peers/node/browser_rp.mjs) as a
subprocess that serves its own redirect URI; the Python side reads its JSON lines.

::

    with NodeRelyingParty(client_id="app", secret=s, scope="openid") as rp:
        rp.redirect_uri                       # register it, start the gateway
        url = rp.authorization_url(issuer)    # discovery, PKCE S256, nonce, state
        ...                                   # a browser logs in and lands on rp.redirect_uri
        result = rp.result(timeout=20)        # code exchanged, ID token validated
        rp.stop()                             # -> how many times the callback was hit
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from types import TracebackType
from typing import Any

from tests.peers.test_oidc_provider_peer import NODE_DIR, ensure_openid_client

__all__ = ["NodeRelyingParty"]


class NodeRelyingParty:
    def __init__(self, *, client_id: str, secret: str, scope: str) -> None:
        ensure_openid_client()
        env = {**os.environ, "CLIENT_ID": client_id, "CLIENT_SECRET": secret, "SCOPE": scope}
        self._process = subprocess.Popen(
            ["node", "browser_rp.mjs"],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._next(20)
        assert "redirect_uri" in first, first
        self.redirect_uri: str = first["redirect_uri"]
        self.discovery: dict[str, Any] = {}

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put("")  # EOF

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the relying party said nothing for {timeout} s") from None
        if not line:
            stderr = self._process.stderr.read() if self._process.stderr else ""
            raise AssertionError(f"the relying party exited: {stderr}")
        data: dict[str, Any] = json.loads(line)
        return data

    def _send(self, line: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def authorization_url(self, issuer: str) -> str:
        self._send(issuer)
        answer = self._next(20)
        assert "authorization_url" in answer, answer
        self.discovery = answer["discovery"]
        return str(answer["authorization_url"])

    def result(self, timeout: float = 20) -> dict[str, Any]:
        """What the relying party made of the callback (waits for the browser to land)."""
        return self._next(timeout)

    def stop(self) -> int:
        """End the relying party; return how many times its callback was hit."""
        self._send("stop")
        answer = self._next(10)
        assert "callbacks" in answer, answer
        self._process.wait(timeout=10)
        return int(answer["callbacks"])

    def __enter__(self) -> NodeRelyingParty:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
