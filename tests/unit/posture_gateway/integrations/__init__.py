"""Tests of the IdP integrations: posture API, Okta hook, Entra EAM, OpenAPI."""
