"""The MDM core: the system of record for devices.

Devices, enrollment, device identity (the MDM certificate authority), signed check-ins,
normalised posture, compliance state, the command queue, the directory mirror and
offboarding. This package imports nothing from ``idp_connectors`` or ``posture_gateway``;
reactions across packages travel as domain events (:mod:`mdm_core.bus.events`).
"""
