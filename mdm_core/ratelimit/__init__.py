"""Rate limiting: the limiter protocol and rule, the SQL limiter, and the trust-boundary guard."""
