"""The LDAP connector's exceptions, each with a machine-readable reason.

::

    ConnectorError (idp_connectors.errors)
    └── LdapError                 ldap.error
        ├── LdapUnavailable       ldap.unavailable   cannot connect, timed out
        ├── LdapTlsError          ldap.tls           StartTLS refused, certificate not trusted
        ├── LdapBindError         ldap.bind          the bind was refused
        ├── LdapSearchError       ldap.search        a search failed (result code in the text)
        └── LdapUnsupported       ldap.unsupported   in_chain asked of a server without it

Messages name the server and the LDAP result; never the bind password.
"""

from __future__ import annotations

from idp_connectors.errors import ConnectorError

__all__ = [
    "LdapError",
    "LdapUnavailable",
    "LdapTlsError",
    "LdapBindError",
    "LdapSearchError",
    "LdapUnsupported",
]


class LdapError(ConnectorError):
    reason = "ldap.error"


class LdapUnavailable(LdapError):
    reason = "ldap.unavailable"


class LdapTlsError(LdapError):
    reason = "ldap.tls"


class LdapBindError(LdapError):
    reason = "ldap.bind"


class LdapSearchError(LdapError):
    reason = "ldap.search"


class LdapUnsupported(LdapError):
    reason = "ldap.unsupported"
