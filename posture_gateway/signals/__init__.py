"""The Shared Signals transmitter (OpenID SSF 1.0, CAEP 1.0, RISC 1.0): stream management,
Security Event Tokens, durable push (RFC 8935) and poll (RFC 8936) delivery.

See ``docs/shared-signals.md``. Built by :func:`posture_gateway.signals.setup.build`,
registered on the app by :func:`posture_gateway.signals.setup.register`.
"""

__all__: list[str] = []
