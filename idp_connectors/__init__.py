"""The outside identity world, translated for the gateway and the MDM core.

Upstream IdP clients (OpenID Connect broker mode, :mod:`idp_connectors.oidc_upstream`),
validation of identity-provider-issued hints (Microsoft Entra ``id_token_hint``,
:mod:`idp_connectors.entra`), and the one outbound HTTP client helper
(:func:`idp_connectors.http.make_client`). Errors: :mod:`idp_connectors.errors`.
Imports only ``mdm_core`` of ours, never ``posture_gateway``.
"""
