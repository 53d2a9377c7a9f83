"""LDAP and Active Directory as a source of the directory mirror (``ldap3``).

- **Schema profiles** (:mod:`.schema`): AD (``objectGUID``, ``sAMAccountName``,
  ``userAccountControl``, ``uSNChanged``) and OpenLDAP (``entryUUID``, ``uid``,
  ``pwdAccountLockedTime``, ``modifyTimestamp``); the stable id is the GUID/UUID, never the DN.
- **Attribute mapping** (:mod:`.config`): every attribute of a profile can be overridden in
  the ``ldap`` configuration section, plus a configured "disabled" attribute.
- **Paged search** (:mod:`.client`): RFC 2696 pages over a session that is always TLS
  (StartTLS or LDAPS) with certificate verification, read-only, bound with a secret that is
  never logged.
- **Filters** (:mod:`.filters`): every value escaped (RFC 4515) — no LDAP injection.
- **Nested groups** (:mod:`.nested`): AD's in-chain rule when the server publishes it,
  cycle-safe recursive expansion otherwise.
- **Incremental cursor** (:mod:`.sync`): the highest ``uSNChanged`` / ``modifyTimestamp``
  seen, stored durably; a periodic full sync detects deletions.
- **Scheduled sync** (:mod:`.scheduler`): runs in one process of many, by a lease row.
"""

from idp_connectors.ldap.config import AttributeMap, LdapSettings, ScheduleSettings
from idp_connectors.ldap.errors import (
    LdapBindError,
    LdapError,
    LdapSearchError,
    LdapTlsError,
    LdapUnavailable,
    LdapUnsupported,
)
from idp_connectors.ldap.sync import LdapSync, LdapSyncResult

__all__ = [
    "AttributeMap",
    "LdapSettings",
    "ScheduleSettings",
    "LdapSync",
    "LdapSyncResult",
    "LdapError",
    "LdapBindError",
    "LdapSearchError",
    "LdapTlsError",
    "LdapUnavailable",
    "LdapUnsupported",
]
