"""A scripted push endpoint for delivery tests: a real HTTP server on loopback (werkzeug,
in a thread) that records each request and answers with the next scripted status (then 202).
Verification of the SETs themselves is the independent Node receiver's job (e2e)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.services import free_port

__all__ = ["SetSink", "set_sink"]


@dataclass
class SetSink:
    url: str
    script: list[
        int | tuple[int, dict[str, Any] | None, dict[str, str]] | tuple[int, dict[str, Any]]
    ] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.received.append(
                {
                    "path": request.path,
                    "content_type": request.content_type,
                    "authorization": request.headers.get("Authorization"),
                    "body": request.get_data(as_text=True),
                }
            )
            step = self.script.pop(0) if self.script else 202
        if not isinstance(step, tuple):
            step = (step, None)
        status, body = step[0], step[1]
        headers = step[2] if len(step) > 2 else {}  # type: ignore[misc]
        response = Response(
            json.dumps(body) if body is not None else b"",
            status=status,
            content_type="application/json" if body is not None else None,
            headers=headers,
        )
        return response(environ, start_response)


@contextmanager
def set_sink(*script: Any) -> Iterator[SetSink]:
    """Steps: a status, ``(status, json body)`` or ``(status, body or None, headers)``."""
    port = free_port()
    sink = SetSink(url=f"http://127.0.0.1:{port}/events", script=list(script))
    server = make_server("127.0.0.1", port, sink.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
