"""Offboarding in the gateway: the admin API (:mod:`.api`) and the served-worker runner
(:mod:`.runner`) of the core's durable job (:mod:`mdm_core.offboarding`)."""
