"""The SQL database: engine creation per dialect, schema migration, transactions.

Owns the connection to SQLite (embedded default, a file, WAL mode) or PostgreSQL
(``postgresql://`` URLs, psycopg 3 driver, a connection pool), running Alembic migrations,
and handing out connections in a transaction. PostgreSQL connections are not pinged at every
checkout (a round trip per transaction); only ones idle for ``IDLE_PING_AFTER_S`` are, and a
connection that still fails mid-request is discarded by SQLAlchemy's disconnect handling (the
request fails once, the device retries).

:meth:`Database.autocommit_cursor` serves single-statement reads of the hot path (the read
model's version read) on PostgreSQL: a pool of its own whose connections are always in
autocommit mode, one round trip per read, no BEGIN/COMMIT and no SQLAlchemy execution layer.
:meth:`Database.shared_transaction` opens its transaction at the first step that needs one,
so a request with no SQL step costs no connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry

from mdm_core.domain.errors import ConfigurationError

__all__ = ["IDLE_PING_AFTER_S", "POOL_RECYCLE_S", "Database", "normalise_url"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class _Shared:
    """A shared transaction of one context, opened by its first step (``conn`` until then
    ``None``)."""

    __slots__ = ("engine", "conn", "stack")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None
        self.stack = ExitStack()

    def connection(self) -> Connection:
        if self.conn is None:
            self.conn = self.stack.enter_context(self.engine.begin())
        return self.conn


#: The shared transaction of this context (thread / request), if any.
_SHARED: ContextVar[_Shared | None] = ContextVar("posture_shared_transaction", default=None)


def normalise_url(url: str) -> str:
    """Map ``postgresql://``/``postgres://`` to the psycopg 3 driver; pass others through."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


#: A pooled PostgreSQL connection idle this long is pinged before it is handed out (a server
#: restart or an idle-killing proxy leaves dead ones behind). At any load where a round trip
#: per checkout would matter no connection idles for a second, so a busy pool pings nothing;
#: after an outage of a second or more, no request meets a connection that died with it (at
#: 10 s, a worker whose other pool served nothing during a short outage failed its first
#: request after the return).
IDLE_PING_AFTER_S = 1.0
#: Connections older than this are replaced at checkout.
POOL_RECYCLE_S = 1800
#: Seconds a new PostgreSQL connection may take (libpq ``connect_timeout``): a server that is
#: down or unreachable fails the request within this bound instead of hanging it.
CONNECT_TIMEOUT_S = 5
#: libpq parameters of every PostgreSQL connection: the connect bound above, and TCP
#: keepalives plus ``tcp_user_timeout`` so that a server that vanished without closing the
#: connection (a host lost, a partition) fails an open connection in about 15-25 s instead of
#: the kernel's many minutes. Ignored on Unix sockets.
_PG_CONNECT_ARGS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}


def _stamp_idle(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_S:
        return
    try:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("SELECT 1")
        finally:
            cur.close()
        dbapi_conn.rollback()  # hand it out outside any transaction, as it came back
    except Exception as exc:  # dead: the pool discards it and checks out another
        raise DisconnectionError("pooled connection is gone") from exc


class Database:
    """One database, its engine and its migrations."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self._pool_size = pool_size
        self._echo = echo
        self._autocommit_engine: Engine | None = None
        self._autocommit_lock = threading.Lock()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url, echo=echo)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                self.url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=pool_size,
                # No pool_pre_ping: it costs a round trip per checkout (~0.15 ms measured,
                # a tenth of a check-in). Connections idle for a while are pinged instead,
                # and none lives longer than POOL_RECYCLE_S.
                pool_recycle=POOL_RECYCLE_S,
                connect_args=dict(_PG_CONNECT_ARGS),
            )
            event.listen(self.engine, "checkin", _stamp_idle)
            event.listen(self.engine, "checkout", _ping_if_idle)
        else:
            raise ConfigurationError(
                f"database_url: unsupported scheme {parsed.drivername!r}: "
                "use sqlite:///path or postgresql+psycopg://user@host/db"
            )

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside a transaction: committed on exit, rolled back on error.

        Inside :meth:`shared_transaction` (same context, same database) it is that
        transaction's connection: committed with it, not on this block's exit.
        """
        shared = _SHARED.get()
        if shared is not None and shared.engine is self.engine:
            yield shared.connection()
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def shared_transaction(self) -> Iterator[None]:
        """ONE transaction for every :meth:`transaction` this context opens on this database
        inside the block (a request's hot path: one BEGIN/COMMIT instead of one per step).

        Committed when the block exits normally, rolled back when it raises. A step that
        raises inside it is not rolled back on its own (its earlier statements commit with
        the rest), so use it only where every step's writes stand alone (a spent nonce, a
        replay record). Nested calls join the outer one.
        """
        if _SHARED.get() is not None:
            yield
            return
        shared = _Shared(self.engine)
        token = _SHARED.set(shared)
        try:
            with shared.stack:  # commits (or rolls back) what the first step opened, if any
                yield
        finally:
            _SHARED.reset(token)

    @contextmanager
    def autocommit_cursor(self) -> Iterator[Any]:
        """A DBAPI cursor on a PostgreSQL connection in autocommit mode, for ONE read
        statement (``%s`` parameters): one round trip, no transaction. Its pool is separate,
        so no connection of the main pool ever changes mode. PostgreSQL only. A driver error
        is raised as SQLAlchemy's (``DBAPIError`` subclass), as every other read raises it, so
        callers need one ``except SQLAlchemyError`` (a server gone is a store outage)."""
        import psycopg  # the PostgreSQL driver, present whenever this path runs

        conn = self._autocommit().raw_connection()
        try:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except psycopg.Error as exc:
            conn.invalidate()  # a failed read leaves nothing worth reusing
            if isinstance(exc, psycopg.OperationalError):  # the server went away: so did
                self._autocommit().pool.dispose()  # every idle connection of this pool
            raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
        except Exception:
            conn.invalidate()
            raise
        else:
            conn.close()

    @contextmanager
    def autocommit_connection(self) -> Iterator[Connection]:
        """A connection of the autocommit pool (PostgreSQL): read-only steps of one or more
        statements, each its own round trip, no BEGIN/COMMIT. Under READ COMMITTED every
        statement of a transaction sees a fresh snapshot anyway, so a read made of several
        statements sees what it would see in one."""
        with self._autocommit().connect() as conn:
            yield conn

    def _autocommit(self) -> Engine:
        if not self.is_postgres:
            raise ConfigurationError("the autocommit pool is for PostgreSQL")
        engine = self._autocommit_engine
        if engine is None:
            with self._autocommit_lock:
                engine = self._autocommit_engine
                if engine is None:
                    engine = create_engine(
                        self.url,
                        echo=self._echo,
                        isolation_level="AUTOCOMMIT",
                        pool_size=self._pool_size,
                        max_overflow=self._pool_size,
                        pool_recycle=POOL_RECYCLE_S,
                        connect_args=dict(_PG_CONNECT_ARGS),
                    )
                    event.listen(engine, "checkin", _stamp_idle)
                    event.listen(engine, "checkout", _ping_if_idle)
                    self._autocommit_engine = engine
        return engine

    @property
    def autocommit_engine(self) -> Engine | None:
        """The engine behind :meth:`autocommit_cursor` once used (tests count its reads)."""
        return self._autocommit_engine

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        from alembic import command

        command.upgrade(self.alembic_config(), "head")

    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["engine"] = self.engine
        return cfg

    def dispose(self) -> None:
        self.engine.dispose()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()
