"""The gateway's single sign-on session, server side and bound to a device.

- :mod:`posture_gateway.sso.store` — the :class:`~posture_gateway.sso.store.Session` record
  and the small :class:`~posture_gateway.sso.store.SessionStore` protocol (``create``,
  ``find_live``, ``revoke``, ``list``), protocol-neutral (OIDC uses it; SAML can);
- :mod:`posture_gateway.sso.sql` — the SQL implementation (SQLite and PostgreSQL), plus the
  revoker that ends sessions inside an MDM unit of work;
- :mod:`posture_gateway.sso.settings` — lifetimes (idle, absolute) and the cookie name;
- :mod:`posture_gateway.sso.cookie` — the separate HttpOnly cookie that holds the id;
- :mod:`posture_gateway.sso.admin` — audited revocation for the CLI (and listing's store);
- :mod:`posture_gateway.sso.stale` — stale posture seen at a login or refresh ends access.

See ``docs/sessions.md``.
"""
