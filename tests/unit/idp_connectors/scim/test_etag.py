"""Weak ETags of SCIM resources (RFC 7644 §3.14)."""

from __future__ import annotations

import pytest

from idp_connectors.scim.etag import etag, header_matches


def test_etag_is_weak_and_names_the_version() -> None:
    assert etag(3) == 'W/"3"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('W/"3"', True),
        ('"3"', True),
        ("*", True),
        ('W/"2", W/"3"', True),
        ('W/"4"', False),
        ('W/"33"', False),
        ("", False),
        ("3", False),
    ],
)
def test_header_matches(header: str, expected: bool) -> None:
    assert header_matches(header, 3) is expected
