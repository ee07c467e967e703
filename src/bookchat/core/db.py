"""Database plumbing shared by every domain: URL handling, the async engine, column types."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Enum, MetaData, event
from sqlalchemy.engine import URL, Dialect, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table; constraint names are stable across dialects."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect.

    PostgreSQL keeps the offset; SQLite stores naive text, so values are normalised to UTC on the
    way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def portable_enum(cls: type[StrEnum], name: str) -> Enum:
    """A string enum column stored as VARCHAR + CHECK: identical on SQLite and PostgreSQL, and a
    new value needs no `ALTER TYPE`."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


@dataclass(frozen=True)
class DatabaseTarget:
    """A database URL made ready for SQLAlchemy's async drivers."""

    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def display(self) -> str:
        """The URL with any password hidden, for logs and health output."""
        return self.url.render_as_string(hide_password=True)


_PG_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}
# libpq query options that asyncpg does not take as keyword arguments.
_LIBPQ_ONLY = {"sslmode", "channel_binding", "sslrootcert", "sslcert", "sslkey", "options"}


def resolve_database_url(raw: str) -> DatabaseTarget:
    """Translate a pasted URL into an async one.

    `postgresql://...?sslmode=require` (what Neon's console gives) becomes asyncpg with SSL;
    a `-pooler` host (PgBouncer in transaction mode) gets every prepared-statement cache off.
    `sqlite:///` becomes aiosqlite.
    """
    url = make_url(raw)
    connect_args: dict[str, Any] = {}
    if url.drivername in _PG_SCHEMES or url.drivername == "postgresql+asyncpg":
        query = dict(url.query)
        sslmode = query.pop("sslmode", None) or query.pop("ssl", None)
        for name in _LIBPQ_ONLY:
            query.pop(name, None)
        if isinstance(sslmode, str) and sslmode:
            # asyncpg understands libpq's sslmode names directly.
            connect_args["ssl"] = sslmode
        if url.host and "-pooler" in url.host:
            query["prepared_statement_cache_size"] = "0"
            connect_args["statement_cache_size"] = 0
            connect_args["prepared_statement_name_func"] = _unique_statement_name
        url = url.set(drivername="postgresql+asyncpg", query=query)
    elif url.drivername in {"sqlite", "sqlite+pysqlite"}:
        url = url.set(drivername="sqlite+aiosqlite")
    return DatabaseTarget(url=url, connect_args=connect_args)


def _unique_statement_name() -> str:
    # Behind PgBouncer two backends may see the same client; names must never collide.
    return f"__asyncpg_{uuid.uuid4().hex}__"


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory or other databases."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long a request may wait on the database before it answers 503: a partition (packets
    dropped, not refused) gives no error, only silence, so every wait needs a bound."""

    connect: float = 3.0
    command: float = 3.0
    pool: float = 10.0


# How long closing a broken connection waits for the server's goodbye. SQLAlchemy waits 2 s
# before it drops the socket; during a partition that goodbye never comes, and those 2 s would
# be added to every request that met the timeout.
CLOSE_TIMEOUT_SECONDS = 0.25
SERVER_STATEMENT_GRACE_SECONDS = 1.0


class BoundedCloseConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection whose graceful close gives up quickly (then the socket is simply
    dropped, which the server notices just the same)."""

    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's signature)
        bound = CLOSE_TIMEOUT_SECONDS if timeout is None else min(timeout, CLOSE_TIMEOUT_SECONDS)
        await super().close(timeout=bound)


# How long a SQLite writer waits for another's lock. A local file has no partition to bound:
# this wait is a queue (64 concurrent streams on two cores queued past 3 s), so it stays long.
_SQLITE_LOCK_WAIT_SECONDS = 30
# Statements that leave a SQLite connection in autocommit (no write lock taken); every other
# statement writes, and Python's sqlite3 opens the write transaction right before it.
_SQLITE_READS = ("SELECT", "PRAGMA", "EXPLAIN")


class SQLiteWriter:
    """One write transaction at a time per engine, queued in-process.

    SQLite has one writer per file. Left to SQLite, concurrent writers sleep in its busy handler
    (1, 2, 5 ... 100 ms, retried until the lock is free), so under load a few writers lose the
    race again and again: seconds of tail latency with an idle CPU. Here a connection takes an
    asyncio lock before its first write statement (where sqlite3 begins the transaction) and
    gives it back when the pool takes the connection back (after its commit or rollback), so
    writers wait in a FIFO queue on the event loop instead. Reads take no lock and stay
    concurrent (WAL). Other processes (the CLI next to a server) still meet SQLite's own busy
    timeout.

    A connection that holds the lock and waits for another connection's write in the same
    task would wait forever; the wait is bounded, and then fails as a pool timeout (503)."""

    def __init__(self, wait_seconds: float = _SQLITE_LOCK_WAIT_SECONDS) -> None:
        self.wait_seconds = wait_seconds
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # The DBAPI connection in its write transaction, and the loop of its lock.
        self._holder: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._before_execute)
        pool = engine.sync_engine.pool
        # Back in the pool, or closed (an invalidated connection's transaction is gone with it).
        for name in ("checkin", "close", "close_detached", "invalidate"):
            event.listen(pool, name, self._returned)

    def _before_execute(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        if self._holder is dbapi_connection or statement.lstrip()[:7].upper().startswith(
            _SQLITE_READS
        ):
            return
        dbapi_connection.run_async(lambda _driver: self._acquire())
        self._holder = dbapi_connection

    async def _acquire(self) -> None:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        try:
            async with asyncio.timeout(self.wait_seconds):
                await lock.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"no SQLite write slot within {self.wait_seconds:g} s (another write "
                "transaction held it)"
            ) from None
        self._loop = loop

    def _returned(self, dbapi_connection: Any, *_: Any) -> None:
        if self._holder is None or self._holder is not dbapi_connection:
            return
        self._holder = None
        loop, self._loop = self._loop, None
        lock = self._locks.get(loop) if loop is not None else None
        if lock is None or not lock.locked():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            lock.release()
        elif loop is not None and not loop.is_closed():
            # Returned from another thread (a connection collected by the garbage collector).
            loop.call_soon_threadsafe(lock.release)


def create_engine(
    raw_url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    timeouts: DatabaseTimeouts | None = None,
    sqlite_write_wait: float = _SQLITE_LOCK_WAIT_SECONDS,
) -> AsyncEngine:
    """Build the async engine for a database URL (SQLite or PostgreSQL); `timeouts` bound
    waiting for the pool and, on PostgreSQL, connecting and each statement (the server's engine
    sets them; migrations and the CLI's plain engine keep the drivers' defaults). On SQLite,
    write transactions queue in-process (`SQLiteWriter`), at most `sqlite_write_wait` seconds."""
    target = resolve_database_url(raw_url)
    kwargs: dict[str, Any] = {"echo": echo, "connect_args": dict(target.connect_args)}
    if timeouts is not None:
        kwargs["pool_timeout"] = timeouts.pool
    if target.dialect == "sqlite":
        path = sqlite_file(target.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"].setdefault("timeout", _SQLITE_LOCK_WAIT_SECONDS)
    else:
        # With timeouts, `BoundedPing` checks a pooled connection out instead.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=timeouts is None)
        if timeouts is not None:
            kwargs["connect_args"].update(postgres_timeouts(target, timeouts))
    engine = create_async_engine(target.url, **kwargs)
    if target.dialect == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        SQLiteWriter(sqlite_write_wait).attach(engine)
    elif timeouts is not None:
        event.listen(engine.sync_engine, "handle_error", _timeout_drops_connection)
        BoundedPing(timeouts.command).attach(engine)
    return engine


class BoundedPing:
    """The check-out ping of a pooled PostgreSQL connection (instead of `pool_pre_ping`).

    SQLAlchemy's ping begins a transaction, runs its query and rolls back; when the partition
    falls after the BEGIN, the query waits out the command timeout, then the rollback waits as
    long again for the cancel request (the bench saw a chat answer 503 after 6 s). This ping is
    one simple query (no transaction, no prepared statement: PgBouncer's transaction mode
    accepts it) bounded by the command timeout. Silence fails the check-out at once (the pool
    drops the connection; reconnecting would only wait a connect timeout more); a connection
    the server closed (a restart, Neon suspending its compute) is replaced, as before."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def attach(self, engine: AsyncEngine) -> None:
        pool = engine.sync_engine.pool
        event.listen(pool, "connect", self._connected)
        event.listen(pool, "checkout", self._ping)

    @staticmethod
    def _connected(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_FRESH] = True  # just opened: no ping on its first check-out

    def _ping(self, _dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if record.info.pop(_FRESH, False):
            return
        connection = record.driver_connection
        if connection is None:  # closed meanwhile: the pool opens a new one
            raise DisconnectionError("the pooled connection is closed")
        try:
            await_(connection.execute("SELECT 1", timeout=self.timeout))
        except TimeoutError:
            raise  # silence: no reconnecting (see above)
        except Exception as exc:  # closed or broken: replaced by a new connection
            raise DisconnectionError(f"the pooled connection is unusable ({exc!r})") from exc


_FRESH = "bookchat.fresh"


def _timeout_drops_connection(context: ExceptionContext) -> None:
    # A statement past its timeout leaves asyncpg waiting for a cancel request, which a
    # partition never delivers: rolling the connection back would wait a whole timeout again.
    # Treated as a lost connection, it is dropped instead (and the pool forgets older ones).
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True


def postgres_timeouts(target: DatabaseTarget, timeouts: DatabaseTimeouts) -> dict[str, Any]:
    """asyncpg's connect arguments for `timeouts`. The server's own `statement_timeout` (which
    stops a statement whose client gave up) goes in the startup packet, which PgBouncer in
    transaction mode (Neon's `-pooler` hosts) refuses: those keep the client-side bound only."""
    args: dict[str, Any] = {
        "timeout": timeouts.connect,
        "command_timeout": timeouts.command,
        "connection_class": BoundedCloseConnection,
    }
    if not (target.url.host and "-pooler" in target.url.host):
        # A second later than the client's bound: the client's fires first and is answered 503;
        # the server's stops what a client gave up on when its cancel request was lost.
        server_bound = timeouts.command + SERVER_STATEMENT_GRACE_SECONDS
        args["server_settings"] = {"statement_timeout": str(round(server_bound * 1000))}
    return args


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # Cascading deletes need foreign keys on; WAL lets readers run while a writer commits.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
