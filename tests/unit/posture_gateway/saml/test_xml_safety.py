"""The hardened parser: DTDs, entities, PIs, sizes, depth, deflate bombs are refused with typed
errors; the comment-injection trick never truncates text."""

from __future__ import annotations

import base64
import zlib

import pytest
from lxml import etree

from posture_gateway.saml.protocol.errors import (
    BindingError,
    DeflateBomb,
    SamlError,
    XmlError,
    XmlForbidden,
    XmlTooComplex,
    XmlTooLarge,
)
from posture_gateway.saml.protocol.xml_safety import (
    XmlLimits,
    b64decode_strict,
    element_text,
    inflate,
    parse_xml,
)


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


XXE_EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>"""
XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><r/>"""
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)


@pytest.mark.parametrize(
    "doc",
    [
        XXE_EXTERNAL,
        XXE_PARAMETER,
        BILLION_LAUGHS,
        b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd"><r/>',
        b"<!DOCTYPE r><r/>",
        b"\n  <!DOCTYPE r []><r/>",
    ],
    ids=["xxe-external", "xxe-parameter", "billion-laughs", "external-dtd", "doctype", "ws"],
)
def test_any_dtd_is_refused_outright(doc: bytes) -> None:
    with pytest.raises(XmlForbidden, match="DTD|DOCTYPE|ENTITY"):
        parse_xml(doc)


def test_a_dtd_hidden_in_another_encoding_is_refused() -> None:
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r []><r/>'.encode("utf-16")
    with pytest.raises(XmlForbidden):
        parse_xml(utf16)
    latin = b'<?xml version="1.0" encoding="ISO-8859-1"?><r/>'
    with pytest.raises(XmlForbidden, match="only UTF-8"):
        parse_xml(latin)


@pytest.mark.parametrize(
    "doc",
    [b'<?xml-stylesheet href="x"?><r/>', b"<r><?evil data?></r>", b"<r/><?after x?>"],
)
def test_processing_instructions_are_refused(doc: bytes) -> None:
    with pytest.raises(XmlForbidden, match="processing instruction"):
        parse_xml(doc)


def test_the_xml_declaration_is_not_a_processing_instruction() -> None:
    root = parse_xml(b'<?xml version="1.0" encoding="UTF-8"?><r a="1"/>')
    assert root.get("a") == "1"


def test_size_depth_and_element_count_limits() -> None:
    limits = XmlLimits(max_bytes=100, max_depth=5, max_elements=10)
    with pytest.raises(XmlTooLarge):
        parse_xml(b"<r>" + b"x" * 200 + b"</r>", limits=limits)
    with pytest.raises(XmlTooComplex, match="deeper"):
        parse_xml(b"<a>" * 6 + b"</a>" * 6, limits=limits)
    with pytest.raises(XmlTooComplex, match="elements"):
        parse_xml(b"<r>" + b"<e/>" * 10 + b"</r>", limits=limits)
    parse_xml(b"<a>" * 5 + b"</a>" * 5, limits=limits)  # at the limit: fine


def test_malformed_and_empty_input() -> None:
    for doc in (b"", b"   ", b"<r>", b"not xml", b"<r></s>", b"\xff\xfe"):
        with pytest.raises(XmlError):
            parse_xml(doc)


def test_comment_injection_never_truncates_text() -> None:
    root = parse_xml(b"<r><n>alice@corp.com<!---->.evil.com</n></r>")
    assert element_text(root[0], what="NameID") == "alice@corp.com.evil.com"
    assert root[0].text == "alice@corp.com.evil.com"


def test_element_text_refuses_child_elements() -> None:
    root = parse_xml(b"<r><n>alice<b>x</b>@corp.com</n></r>")
    with pytest.raises(XmlError, match="text only"):
        element_text(root[0], what="NameID")


def test_inflate_caps_output_and_refuses_bombs() -> None:
    bomb = deflate(b"\0" * (10 * 1024 * 1024))  # 10 MiB of zeros in ~10 KB
    assert len(bomb) < 20_000
    with pytest.raises(DeflateBomb):
        inflate(bomb, max_bytes=256 * 1024)
    assert inflate(deflate(b"<r/>"), max_bytes=4) == b"<r/>"
    with pytest.raises(DeflateBomb):
        inflate(deflate(b"<r/>"), max_bytes=3)


def test_inflate_refuses_corrupt_truncated_and_trailing_data() -> None:
    good = deflate(b"<r>hello</r>" * 20)
    with pytest.raises(BindingError):
        inflate(b"\xff\xff\xff\xff", max_bytes=1000)
    with pytest.raises(BindingError, match="truncated"):
        inflate(good[: len(good) // 2], max_bytes=1000)
    with pytest.raises(BindingError, match="after"):
        inflate(good + b"junk", max_bytes=1000)
    with pytest.raises(BindingError):
        inflate(zlib.compress(b"<r/>"), max_bytes=1000)  # zlib header: not raw DEFLATE


def test_b64_is_strict() -> None:
    assert b64decode_strict("PHIvPg==", what="x", max_encoded=100) == b"<r/>"
    assert b64decode_strict("PHIv\r\nPg==", what="x", max_encoded=100) == b"<r/>"
    for bad in ("PHIvPg=", "PHIv*g==", "", "PHIvPg==PHIv", "é"):
        with pytest.raises(BindingError):
            b64decode_strict(bad, what="x", max_encoded=100)
    with pytest.raises(XmlTooLarge):
        b64decode_strict(base64.b64encode(b"x" * 300), what="x", max_encoded=100)


def test_every_refusal_is_a_saml_error() -> None:
    for cls in (XmlError, XmlForbidden, XmlTooLarge, XmlTooComplex, BindingError, DeflateBomb):
        assert issubclass(cls, SamlError)
        assert cls.reason


def test_xinclude_and_schema_locations_are_never_followed() -> None:
    doc = (
        b'<r xmlns:xi="http://www.w3.org/2001/XInclude" '
        b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:schemaLocation="urn:x http://127.0.0.1:9/x.xsd">'
        b'<xi:include href="file:///etc/passwd" parse="text"/></r>'
    )
    root = parse_xml(doc)
    assert b"root:" not in etree.tostring(root)
    assert root[0].tag == "{http://www.w3.org/2001/XInclude}include"  # left as an element
