"""Request ids and the access log: one line per request on the ``posture.access`` logger.

Every request gets an id: the caller's ``X-Request-ID`` when it is sane (1-128 characters of
``A-Za-z0-9._:-``, so it cannot forge log lines or carry a secret of any length), else a
fresh random one. It is kept in ``flask.g.request_id``, attached to every log record made
during the request, and echoed in the response's ``X-Request-ID``. The access line has the
method, the path WITHOUT the query string (authorization codes, tokens and hints travel in
query strings), the status, the latency in milliseconds, the response size and the client
address.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, request

__all__ = ["init_app", "REQUEST_ID_HEADER", "access_log"]

REQUEST_ID_HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
access_log = logging.getLogger("posture.access")


def _begin() -> None:
    presented = request.environ.get(_REQUEST_ID_ENVIRON, "")  # the header, as WSGI has it
    g.request_id = presented if _SANE.match(presented) else secrets.token_hex(16)
    g.request_started = time.perf_counter()


def _end(response: Response) -> Response:
    request_id = g.get("request_id")
    if not isinstance(request_id, str):  # a request that failed before _begin ran
        _begin()
        request_id = g.request_id
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    latency_ms = (time.perf_counter() - started) * 1e3 if isinstance(started, float) else 0.0
    environ = request.environ
    method, path, status = environ.get("REQUEST_METHOD"), request.path, response.status_code
    access_log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "request_id": request_id,  # so the log filter need not look it up again
            "fields": {
                "event": "request",
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(latency_ms, 2),
                "bytes": response.content_length,
                "remote": environ.get("REMOTE_ADDR"),  # what request.remote_addr reads
            },
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Register the request-id and access-log hooks on ``app`` (first before, last after)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_end)
