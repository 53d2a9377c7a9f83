"""The LDAP session: TLS (StartTLS or LDAPS, certificate always verified), bind, paged search.

:func:`connect` opens a read-only ``ldap3`` connection per :class:`LdapSettings`:
``ldaps://`` wraps the socket in TLS at once; ``ldap://`` sends StartTLS before the bind and
refuses to go on if the server declines it (unless ``allow_plaintext`` for a loopback test
directory). The certificate must chain to ``ca_file`` (or the system store) and match the
host; a wrong CA is :class:`LdapTlsError` before any credential leaves the process.

:meth:`LdapSession.paged` walks a search with the Simple Paged Results control (RFC 2696,
``page_size`` per page), yielding ``(dn, raw attributes)`` — bytes as the server sent them,
decoded by :mod:`idp_connectors.ldap.schema`. A failed page raises :class:`LdapSearchError`
with the LDAP result (a partial read is never taken for the whole directory).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_exc

from idp_connectors.ldap.config import LdapSettings
from idp_connectors.ldap.errors import (
    LdapBindError,
    LdapSearchError,
    LdapTlsError,
    LdapUnavailable,
)

__all__ = ["LdapSession", "connect", "PAGED_RESULTS_OID"]

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"

Raw = Mapping[str, Sequence[bytes]]


class LdapSession:
    """A bound connection; use as a context manager (unbinds on exit)."""

    def __init__(self, conn: ldap3.Connection, settings: LdapSettings) -> None:
        self.conn = conn
        self.settings = settings

    def __enter__(self) -> LdapSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.conn.unbind()
        except ldap_exc.LDAPException:  # already gone: nothing to release
            pass

    def paged(
        self,
        base: str,
        search_filter: str,
        attributes: Sequence[str],
        *,
        scope: str = ldap3.SUBTREE,
        page_size: int | None = None,
    ) -> Iterator[tuple[str, Raw]]:
        """Every entry under ``base`` matching ``search_filter``, page by page."""
        size = page_size or self.settings.page_size
        cookie: bytes | None = None
        while True:
            try:
                self.conn.search(
                    base,
                    search_filter,
                    search_scope=scope,
                    attributes=list(attributes),
                    paged_size=size,
                    paged_cookie=cookie,
                    paged_criticality=True,
                )
            except ldap_exc.LDAPSocketOpenError as exc:
                raise LdapUnavailable(f"{self.settings.url}: {exc}") from None
            except ldap_exc.LDAPCommunicationError as exc:
                raise LdapUnavailable(f"{self.settings.url}: {exc}") from None
            except ldap_exc.LDAPException as exc:
                raise LdapSearchError(f"search under {base!r} failed: {exc}") from None
            result = self.conn.result
            if result.get("result") != 0:
                raise LdapSearchError(
                    f"search under {base!r} failed: {result.get('description')} "
                    f"({result.get('result')}) {result.get('message') or ''}".rstrip()
                )
            for item in self.conn.response or ():
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["raw_attributes"]
            cookie = _cookie(result)
            if not cookie:
                return

    def read(self, dn: str, attributes: Sequence[str]) -> Raw | None:
        """One entry by DN (base scope), or ``None`` when it does not exist."""
        try:
            self.conn.search(
                dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=list(attributes)
            )
        except ldap_exc.LDAPException as exc:
            raise LdapSearchError(f"read of {dn!r} failed: {exc}") from None
        result = self.conn.result
        if result.get("result") == 32:  # noSuchObject
            return None
        if result.get("result") != 0:
            raise LdapSearchError(f"read of {dn!r} failed: {result.get('description')}")
        for item in self.conn.response or ():
            if item.get("type") == "searchResEntry":
                raw: Raw = item["raw_attributes"]
                return raw
        return None


def _cookie(result: Mapping[str, Any]) -> bytes | None:
    try:
        value = result["controls"][PAGED_RESULTS_OID]["value"]["cookie"]
    except (KeyError, TypeError):
        return None
    return bytes(value) if value else None


class _VerifiedTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 ships no types
    """TLS by the standard library's own checks: ``ssl.create_default_context`` verifies the
    chain (to ``ca_file`` or the system store) *and* the host name or IP address, TLS 1.2+.
    (ldap3's own wrapping turns the context's host check off and calls the deprecated
    ``ssl.match_hostname`` instead.)"""

    def __init__(self, host: str, ca_file: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self._host = host
        self._context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._host,
        )


def _tls(settings: LdapSettings, host: str) -> ldap3.Tls:
    return _VerifiedTls(host, str(settings.ca_file) if settings.ca_file else None)


def connect(settings: LdapSettings) -> LdapSession:
    """A bound, verified session (see the module docstring). Raises :class:`LdapError`s."""
    parts = urlsplit(settings.url)
    host = parts.hostname or ""
    ldaps = parts.scheme == "ldaps"
    port = parts.port or (636 if ldaps else 389)
    timeout = max(1, int(settings.timeout.total_seconds()))
    if settings.ca_file is not None and not settings.ca_file.is_file():
        raise LdapTlsError(f"ldap.ca_file {settings.ca_file} does not exist")
    use_tls = ldaps or not settings.allow_plaintext
    server = ldap3.Server(
        host,
        port=port,
        use_ssl=ldaps,
        tls=_tls(settings, host) if use_tls else None,
        get_info=ldap3.NONE,
        connect_timeout=timeout,
    )
    conn = ldap3.Connection(
        server,
        user=settings.bind_dn,
        password=settings.password(),
        authentication=ldap3.SIMPLE if settings.bind_dn else ldap3.ANONYMOUS,
        read_only=True,
        receive_timeout=timeout,
        raise_exceptions=False,
        auto_referrals=False,
        return_empty_attributes=False,
    )
    try:
        conn.open()
        if use_tls and not ldaps and not conn.start_tls():
            raise LdapTlsError(f"{settings.url}: the server refused StartTLS")
    except ldap_exc.LDAPStartTLSError as exc:
        raise LdapTlsError(f"{settings.url}: StartTLS failed: {_tls_reason(exc)}") from None
    except ldap_exc.LDAPSocketOpenError as exc:
        if "certificate" in str(exc).lower() or "ssl" in str(exc).lower():
            raise LdapTlsError(f"{settings.url}: TLS failed: {_tls_reason(exc)}") from None
        raise LdapUnavailable(f"{settings.url}: cannot connect: {exc}") from None
    except (ldap_exc.LDAPException, ssl.SSLError, OSError) as exc:
        if isinstance(exc, ssl.SSLError) or "certificate" in str(exc).lower():
            raise LdapTlsError(f"{settings.url}: TLS failed: {_tls_reason(exc)}") from None
        raise LdapUnavailable(f"{settings.url}: cannot connect: {exc}") from None
    try:
        bound = conn.bind()
    except ldap_exc.LDAPException as exc:
        raise LdapUnavailable(f"{settings.url}: bind failed: {exc}") from None
    if not bound:
        description = conn.result.get("description") if conn.result else "refused"
        conn.unbind()
        raise LdapBindError(f"{settings.url}: bind as {settings.bind_dn!r} refused: {description}")
    return LdapSession(conn, settings)


def _tls_reason(exc: BaseException) -> str:
    text = str(exc)
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else text[:200]
