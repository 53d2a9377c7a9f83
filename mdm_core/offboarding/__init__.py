"""Offboarding: the durable job that ends a leaver's access and cleans their devices.

- :mod:`.model`: the job, its devices, the report, statuses and errors.
- :mod:`.store` / :mod:`.sql_store`: ``uow.offboarding`` (jobs, devices, user blocks).
- :mod:`.service`: :class:`~mdm_core.offboarding.service.OffboardingService` (``core.offboarding``).
- :mod:`.directory_trigger`: the outbox listener that offboards on a directory disable/delete.

This package's ``__init__`` imports nothing (enrollment imports :mod:`.model`).
"""
