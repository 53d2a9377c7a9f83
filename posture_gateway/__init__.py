"""The access plane: device proof at login, the decision, the OIDC provider, the SAML IdP,
the posture API for identity providers, signals out, web pages, the app factory
(:func:`posture_gateway.app.create_app`) and the ``posture`` CLI."""
