"""Refuse an unreadable HTTP Basic client credential before authlib sees it.

authlib's ``extract_basic_authorization`` decodes the base64 payload as UTF-8 and lets the
``UnicodeDecodeError`` escape, so ``Authorization: Basic <base64 of non-UTF-8 bytes>`` on the
token, introspection or revocation endpoint was a 500 (found by schemathesis). This hook
answers such a request with RFC 6749 section 5.2 ``invalid_client`` (401) instead; a readable
credential goes on to authlib unchanged, which checks it.
"""

from __future__ import annotations

import base64
import binascii

from flask import Flask, Response, jsonify, request

__all__ = ["init_app", "GUARDED_PREFIX"]

GUARDED_PREFIX = "/oauth/"


def _readable(value: str) -> bool:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return ":" in decoded


def _guard() -> Response | None:
    if not request.path.startswith(GUARDED_PREFIX):
        return None
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or _readable(value):
        return None
    response = jsonify(
        error="invalid_client",
        error_description="the Basic client credential is not base64 of UTF-8 id:secret",
    )
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="posture-gateway"'
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.before_request(_guard)
