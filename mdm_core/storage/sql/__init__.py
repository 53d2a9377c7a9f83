"""SQLAlchemy Core implementation of the storage protocols, for SQLite and PostgreSQL.

One implementation serves both dialects: SQLAlchemy abstracts them, and the few differences
(upserts, pragmas) are handled in :mod:`mdm_core.storage.sql.database`. See
``docs/decisions.md`` for why this is one package and not ``sqlite/`` + ``postgres/`` copies.
"""
