"""The one hardened XML parser of the SAML layer, plus strict base64 and capped DEFLATE.

Every SAML message and metadata file is parsed here, never with a bare ``etree.fromstring``.
What is refused (each a :class:`~.errors.XmlError` subclass with a clear message):

- any ``<!DOCTYPE`` or ``<!ENTITY`` (XXE, parameter entities, billion laughs): refused
  outright, before the parser sees the bytes, and again if the parsed tree has a DTD;
- processing instructions anywhere (the XML declaration itself is not a PI);
- anything but UTF-8 (SAML messages are UTF-8; other encodings could hide a DOCTYPE);
- documents over ``max_bytes``, deeper than ``max_depth`` or with more than ``max_elements``.

The lxml parser never loads a DTD, resolves no entity, touches no network and keeps libxml2's
``huge_tree`` protection on. Comments are dropped at parse time: adjacent text is merged, so
``alice@corp.com<!---->.evil.com`` reads as the whole string, never the truncated prefix.

:func:`inflate` undoes the HTTP-Redirect binding's raw DEFLATE with a hard output cap: a
deflate bomb stops at the cap and is refused (:class:`~.errors.DeflateBomb`).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass

from lxml import etree

from .errors import BindingError, DeflateBomb, XmlError, XmlForbidden, XmlTooComplex, XmlTooLarge

__all__ = [
    "XmlLimits",
    "DEFAULT_LIMITS",
    "parse_xml",
    "b64decode_strict",
    "inflate",
    "element_text",
    "hardened_parser",
]


@dataclass(frozen=True)
class XmlLimits:
    """Bounds on one inbound message. Defaults fit every real AuthnRequest/Response/metadata
    file we have seen with a wide margin (an Okta AuthnRequest is ~2 KB; an SP metadata file
    with two certificates ~6 KB; a Response with 30 attributes ~12 KB)."""

    max_bytes: int = 256 * 1024  # the XML document (after base64 decode / inflate)
    max_encoded_bytes: int = 512 * 1024  # the base64 form as received
    max_depth: int = 32
    max_elements: int = 4096
    max_relay_state: int = 1024  # bindings §3.4.3 says 80 bytes; real SPs send more


DEFAULT_LIMITS = XmlLimits()

# A document with a DTD in any form is refused before parsing (the tree check below is a second
# line). XML names are case-sensitive: ``<!doctype`` is not XML, and libxml2 refuses it.
_FORBIDDEN = re.compile(rb"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)")
_XML_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")

_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": False,  # kept so they can be refused, not silently dropped
    "collect_ids": False,
    "strip_cdata": True,
}


def hardened_parser() -> etree.XMLParser:
    """A fresh lxml parser with our options (no DTD, no entities, no network, no comments).

    For libraries that take a parser (signxml's verifier). A new one per call: lxml parsers
    are not safe to share between threads.
    """
    return etree.XMLParser(**_PARSER_OPTIONS)  # type: ignore[arg-type]


def parse_xml(data: bytes | str, *, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse one SAML document under ``limits``; returns its root element.

    Raises :class:`XmlTooLarge`, :class:`XmlTooComplex`, :class:`XmlForbidden` or
    :class:`XmlError` (malformed); never an lxml exception.
    """
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise XmlForbidden("XML text is not valid Unicode") from exc
    elif isinstance(data, bytes | bytearray):
        raw = bytes(data)
    else:
        raise XmlError(f"expected XML bytes, got {type(data).__name__}")
    if len(raw) > limits.max_bytes:
        raise XmlTooLarge(
            f"XML document is {len(raw)} bytes, over the {limits.max_bytes}-byte limit"
        )
    if not raw.strip():
        raise XmlError("empty XML document")
    if raw.startswith((b"\xef\xbb\xbf",)):
        raw = raw[3:]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlForbidden("XML document is not UTF-8") from exc
    declared = _XML_DECL_ENCODING.match(raw)
    if declared and declared.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        raise XmlForbidden(f"XML encoding {declared.group(1).decode()!r} refused: only UTF-8")
    found = _FORBIDDEN.search(raw)
    if found:
        kind = found.group(1).decode()
        raise XmlForbidden(f"XML document declares <!{kind} ...>: DTDs and entities are refused")
    try:
        root = etree.fromstring(raw, parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"malformed XML: {exc.msg}") from exc
    # any other lxml refusal (e.g. an odd input type or encoding) is malformed input too
    except (etree.LxmlError, ValueError, TypeError) as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    if root is None:
        raise XmlError("malformed XML: no root element")
    docinfo = root.getroottree().docinfo
    if (
        getattr(docinfo, "doctype", "")
        or docinfo.internalDTD is not None
        or docinfo.externalDTD is not None
    ):
        raise XmlForbidden("XML document has a DTD: refused")
    _check_shape(root, limits)
    return root


def _check_shape(root: etree._Element, limits: XmlLimits) -> None:
    """Refuse PIs, entity references and trees that nest or sprawl past the limits."""
    sibling = root.getprevious()
    while sibling is not None:
        if isinstance(sibling, etree._ProcessingInstruction):
            raise XmlForbidden("processing instructions are refused")
        sibling = sibling.getprevious()
    sibling = root.getnext()
    while sibling is not None:
        if isinstance(sibling, etree._ProcessingInstruction):
            raise XmlForbidden("processing instructions are refused")
        sibling = sibling.getnext()
    count = 0
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, etree._ProcessingInstruction):
            raise XmlForbidden("processing instructions are refused")
        if isinstance(node, etree._Entity):
            raise XmlForbidden("entity references are refused")
        count += 1
        if count > limits.max_elements:
            raise XmlTooComplex(f"XML document has more than {limits.max_elements} elements")
        if depth > limits.max_depth:
            raise XmlTooComplex(f"XML document nests deeper than {limits.max_depth} elements")
        for child in node:
            stack.append((child, depth + 1))


_B64_CHARS = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")


def b64decode_strict(value: str | bytes, *, what: str, max_encoded: int) -> bytes:
    """Decode standard base64 (whitespace and line breaks allowed, nothing else).

    Raises :class:`XmlTooLarge` over ``max_encoded`` characters, :class:`BindingError` when it
    is not base64.
    """
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError as exc:
            raise BindingError(f"{what} is not base64 (non-ASCII characters)") from exc
    if len(value) > max_encoded:
        raise XmlTooLarge(f"{what} is {len(value)} characters, over the {max_encoded} limit")
    compact = b"".join(value.split())
    if not compact:
        raise BindingError(f"{what} is empty")
    if len(compact) % 4 or not _B64_CHARS.match(compact):
        raise BindingError(f"{what} is not valid base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BindingError(f"{what} is not valid base64") from exc


def inflate(data: bytes, *, max_bytes: int) -> bytes:
    """Raw DEFLATE (RFC 1951, no zlib header) with a hard cap on the output.

    Raises :class:`DeflateBomb` when the output would exceed ``max_bytes``, and
    :class:`BindingError` for a corrupt or truncated stream or trailing garbage.
    """
    decompressor = zlib.decompressobj(wbits=-15)
    try:
        out = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise BindingError(f"SAML message is not valid raw DEFLATE: {exc}") from exc
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise DeflateBomb(f"SAML message inflates past the {max_bytes}-byte limit: refused")
    if not decompressor.eof:
        raise BindingError("SAML message DEFLATE stream is truncated")
    if decompressor.unused_data:
        raise BindingError("SAML message has data after the DEFLATE stream")
    return out


def element_text(element: etree._Element, *, what: str) -> str:
    """The whole text content of a simple-content element (e.g. NameID, Issuer), stripped.

    Child elements are refused (a simple-content element has none; a child would let a reader
    see only part of the value). Comments were removed at parse time, so text split by a
    comment is already one string.
    """
    for child in element:
        if isinstance(child, etree._Element) and not isinstance(
            child, etree._Comment | etree._ProcessingInstruction
        ):
            raise XmlError(f"{what} must contain text only, found a child element")
    return "".join(str(t) for t in element.itertext()).strip()
