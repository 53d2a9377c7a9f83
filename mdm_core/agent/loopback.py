"""The loopback login helper: signed device login proofs for the gateway's login page only.

The gateway's login page (in the user's browser) calls
``GET http://127.0.0.1:<port>/v1/login-proof?nonce=<n>&aud=<aud>`` (the pattern Okta FastPass
uses). The helper answers only when the request's ``Origin`` header is **exactly** the
configured gateway origin (compared in constant time); any other origin, or none, gets a 403
without CORS headers, so another web page can neither read a proof nor learn the device id.
The ``Host`` header must name the loopback address (a DNS-rebinding page cannot reach it
through its own host name), and ``aud`` must be a URL on the gateway origin.

The answer is a login proof JWT (``typ: device-login+jwt``) signed by the device key over
``aud`` and ``nonce``, optionally carrying a fresh posture snapshot (``posture`` claim).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mdm_core.agent.keys import DeviceKey

__all__ = ["DEFAULT_PORT", "LoopbackHelper", "LOGIN_PROOF_PATH", "origin_of"]

LOGIN_PROOF_PATH = "/v1/login-proof"
#: The port the helper listens on and the gateway's login page asks (``oidc.agent_port``).
DEFAULT_PORT = 48421
_NONCE_RE = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

PostureSource = Callable[[], dict[str, Any]]


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


class LoopbackHelper:
    """The helper server, run in a daemon thread on 127.0.0.1."""

    def __init__(
        self,
        key: DeviceKey,
        device_id: str,
        gateway_origin: str,
        *,
        posture: PostureSource | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if origin_of(gateway_origin) != gateway_origin:
            raise ValueError(
                f"gateway origin must be scheme://host[:port] with nothing after it, "
                f"got {gateway_origin!r}"
            )
        if host not in ("127.0.0.1", "::1"):
            raise ValueError("the login helper listens on the loopback address only")
        self.key = key
        self.device_id = device_id
        self.gateway_origin = gateway_origin
        self.posture = posture
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackHelper:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how quickly stop() is noticed
            name="posture-loopback",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    # --- decisions (no I/O; the handler calls these) -----------------------------------------

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return False
        return hmac.compare_digest(origin.encode(), self.gateway_origin.encode())

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in _LOOPBACK_HOSTS and host.endswith(f":{self.port}")

    def login_proof(self, query: str) -> tuple[int, dict[str, Any]]:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=8)
        nonce = params.get("nonce", [""])
        aud = params.get("aud", [""])
        if len(nonce) != 1 or not _NONCE_RE.match(nonce[0]):
            return 400, {"error": "bad_nonce", "reason": "nonce: 16-256 URL-safe characters"}
        if len(aud) != 1:
            return 400, {"error": "bad_audience", "reason": "exactly one aud is required"}
        try:
            aud_origin = origin_of(aud[0])
        except ValueError:
            return 400, {"error": "bad_audience", "reason": "aud must be an absolute URL"}
        if not hmac.compare_digest(aud_origin.encode(), self.gateway_origin.encode()):
            return 400, {"error": "bad_audience", "reason": "aud is not on the gateway origin"}
        want_posture = params.get("posture", ["1"])[0] != "0"
        snapshot = self.posture() if (self.posture is not None and want_posture) else None
        proof = self.key.login_proof(self.device_id, aud[0], nonce[0], posture=snapshot)
        return 200, {"proof": proof, "device_id": self.device_id}


def _make_handler(helper: LoopbackHelper) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "posture-loopback/0.1"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            return  # requests carry nonces; the helper keeps no access log

        def _send(self, status: int, body: dict[str, Any] | None, cors: bool) -> None:
            payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Vary", "Origin")
            if cors:
                self.send_header("Access-Control-Allow-Origin", helper.gateway_origin)
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        def _gate(self) -> bool:
            if not helper.host_allowed(self.headers.get("Host")):
                self._send(403, {"error": "host_refused", "reason": "not a loopback Host"}, False)
                return False
            if not helper.origin_allowed(self.headers.get("Origin")):
                self._send(
                    403,
                    {"error": "origin_refused", "reason": "only the gateway origin may ask"},
                    False,
                )
                return False
            return True

        def do_OPTIONS(self) -> None:  # noqa: N802 (http.server naming)
            if not self._gate():
                return
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", helper.gateway_origin)
            self.send_header("Access-Control-Allow-Methods", "GET")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")
            if self.headers.get("Access-Control-Request-Private-Network") == "true":
                self.send_header("Access-Control-Allow-Private-Network", "true")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            parts = urlsplit(self.path)
            if parts.path != LOGIN_PROOF_PATH:
                self._send(404, {"error": "not_found", "reason": "unknown path"}, False)
                return
            if not self._gate():
                return
            status, body = helper.login_proof(parts.query)
            self._send(status, body, True)

        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            self._send(405, {"error": "method_not_allowed", "reason": "GET only"}, False)

    return Handler
