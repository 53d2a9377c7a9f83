"""The gateway's signing key ring (ID tokens, access tokens, security event tokens)."""
