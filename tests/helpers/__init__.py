"""Reusable test helpers (device keys and proofs, enrolled devices)."""
