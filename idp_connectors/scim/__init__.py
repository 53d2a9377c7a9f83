"""SCIM 2.0 server (RFC 7643 schemas, RFC 7644 protocol) at ``/scim/v2``.

Identity providers (Okta, Microsoft Entra) push Users and Groups here; they land in the
directory mirror (``mdm_core.directory``), tagged ``scim:<client>``, so policies that target
groups follow at once, and ``active: false`` or ``DELETE`` ends the account's access and
publishes ``directory.account_disabled`` / ``directory.account_deleted`` for offboarding.

Modules: :mod:`~idp_connectors.scim.schemas` (schema definitions as data),
:mod:`~idp_connectors.scim.validate` (input -> canonical document),
:mod:`~idp_connectors.scim.filter` (filter grammar and its safe evaluation),
:mod:`~idp_connectors.scim.patch` (PATCH operations, with Entra's and Okta's shapes),
:mod:`~idp_connectors.scim.etag` (weak ETags), :mod:`~idp_connectors.scim.resources` (the
service over storage), :mod:`~idp_connectors.scim.discovery`, :mod:`~idp_connectors.scim.config`
(clients, tokens) and :mod:`~idp_connectors.scim.views` (the Flask blueprint). Errors:
:mod:`~idp_connectors.scim.errors`. See docs/scim.md.
"""

from __future__ import annotations

from idp_connectors.scim.config import ScimClientSettings, ScimSettings
from idp_connectors.scim.resources import ScimService
from idp_connectors.scim.views import bp, init_app

__all__ = ["ScimClientSettings", "ScimSettings", "ScimService", "bp", "init_app"]
