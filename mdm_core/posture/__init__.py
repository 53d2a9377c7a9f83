"""Normalised, platform-neutral device posture (see :mod:`mdm_core.posture.model`)."""
