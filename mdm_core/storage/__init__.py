"""Storage for the MDM core: one small protocol per concern, combined into a unit of work.

Protocol files (``devices.py``, ``enrollment.py``, ``certauth.py``, ``posture.py``,
``queue.py``, ``outbox.py``, ``replay.py``, ``audit.py``, ``directory.py``,
``compliance.py``) define contracts; :mod:`mdm_core.storage.sql` implements them all with
SQLAlchemy Core for both SQLite (embedded default) and PostgreSQL (production). Everything a
request changes, and the domain events that change causes, is written in one transaction:
``with storage.unit_of_work() as uow: ...``.
"""
