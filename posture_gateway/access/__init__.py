"""The access decision: the protocol-neutral request and decision, the device gate, nonces."""
