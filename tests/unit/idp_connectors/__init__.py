"""Unit tests of idp_connectors."""
