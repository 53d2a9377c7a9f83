"""A tiny real HTTP server on 127.0.0.1 (ephemeral port) serving JSON (GET; POST records bodies).

For tests of our HTTP clients (JWKS caching, discovery) against a real socket instead of a
mocked transport: set ``server.routes[path] = (status, body)`` and read ``server.hits``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonServer:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, bytes] = {}  # last POST body per path
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.hits[self.path] += 1
                status, body = owner.routes.get(self.path, (404, {"error": "not_found"}))
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                owner.bodies[self.path] = self.rfile.read(length)
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
