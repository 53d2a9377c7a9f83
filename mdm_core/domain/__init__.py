"""The domain: device records and lifecycle, errors, quarantine and privacy profiles (no I/O)."""
