"""Weak entity tags of SCIM resources (RFC 7644 §3.14, RFC 9110 §8.8.3).

A resource's ETag is ``W/"<version>"``, its stored version (1 at creation, +1 on every
change), also served as ``meta.version``. ``If-Match`` on PUT/PATCH/DELETE must name the
current version (or be ``*``) or the request is refused with ``412`` and changes nothing;
``If-None-Match`` on GET answers ``304`` when the client's copy is current. Comparison is
weak (RFC 9110 §8.8.3.2): ``W/"3"`` and ``"3"`` match.
"""

from __future__ import annotations

__all__ = ["etag", "header_matches"]


def etag(version: int) -> str:
    return f'W/"{version}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    if tag[:2] in ("W/", "w/"):
        tag = tag[2:]
    return tag.strip()


def header_matches(header: str, version: int) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` value names ``version`` (or is ``*``)."""
    wanted = _opaque(etag(version))
    for part in header.split(","):
        if part.strip() == "*" or _opaque(part) == wanted:
            return True
    return False
