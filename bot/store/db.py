"""The database handle: one async engine, sessions for units of work.

Any URL an SQLAlchemy async driver supports works. SQLite gets the settings a busy bot needs:
WAL (readers never wait for the writer), foreign keys on, a busy timeout, and write transactions that
take the lock at BEGIN, queued in this process, so writers wait their turn instead of failing with
"database is locked".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from bot.store._turns import WriterTurns
from bot.store.errors import DatabaseUnavailable, StoreError

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "Database", "create_engine", "display_url", "normalize_url"]

_READ_ONLY_OPTION = "imaginebot_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long an SQLite writer waits for another writer's lock (in its driver thread, not the loop)."""

# Self-hosters paste URLs from their hosting panel; map the sync spellings to the async drivers.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def normalize_url(url: str | URL) -> URL:
    """Parse `url`, swapping a bare `sqlite://`/`postgresql://` scheme for its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: a malformed URL may still hold a password.
        raise DatabaseUnavailable(
            "DATABASE_URL is not a database URL; it looks like sqlite+aiosqlite:///data/imaginebot.db "
            "or postgresql+asyncpg://user:password@host/dbname."
        ) from None
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, fit for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # URI form; the caller knows what they are doing
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any, *, foreign_keys: bool) -> None:
    # Let SQLAlchemy emit BEGIN itself (see `_on_sqlite_begin`); sqlite3's own handling skips it
    # for SELECT and DDL, which breaks transactional migrations and repeatable reads.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        # Safe with WAL: a power cut can lose the last commits but never corrupts the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
    # fails at once with "database is locked" when another writer committed meanwhile, whereas
    # waiting at BEGIN is covered by busy_timeout. Read-only sessions need no lock.
    read_only = connection.get_execution_options().get(_READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise StoreError("This session was opened with read_only=True; open a normal one to save changes.")


def create_engine(url: str | URL, *, foreign_keys: bool = True, echo: bool = False) -> AsyncEngine:
    """An async engine for `url`, with the SQLite settings above; creates an SQLite file's folder.

    `foreign_keys=False` is for migrations only: batch mode recreates tables, and dropping a parent
    table with enforcement on would cascade-delete its children.
    """
    parsed = normalize_url(url)
    sqlite_file = _sqlite_file(parsed)
    if sqlite_file is not None:
        try:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"Cannot create the folder for the SQLite database {sqlite_file}: {exc.strerror}. "
                "Set IMAGINE_DATA_DIR or DATABASE_URL to a writable place."
            ) from exc
    try:
        engine = create_async_engine(parsed, echo=echo, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (NoSuchModuleError, InvalidRequestError, ImportError) as exc:
        raise DatabaseUnavailable(
            f"DATABASE_URL {display_url(parsed)} needs an async driver that is installed, like "
            "sqlite+aiosqlite:// or postgresql+asyncpg://; "
            f"SQLAlchemy said: {exc}"
        ) from exc
    if parsed.get_backend_name() == "sqlite":

        def on_connect(dbapi_connection: Any, record: Any) -> None:
            _on_sqlite_connect(dbapi_connection, record, foreign_keys=foreign_keys)

        event.listen(engine.sync_engine, "connect", on_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


class Database:
    """The bot's database: build it with `await Database.connect(url)`, close it with `close()`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer at a time: this process's writers take turns (`WriterTurns`, urgent
        # ones first; measured in bench/store_writes.py). Other processes wait through busy_timeout.
        self._turns = WriterTurns() if engine.dialect.name == "sqlite" else None
        self._writer: asyncio.Task[Any] | None = None

    @classmethod
    async def connect(cls, url: str | URL, *, echo: bool = False) -> Database:
        """Open the engine and check that the database answers."""
        engine = create_engine(url, echo=echo)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise DatabaseUnavailable(
                f"Cannot open the database {display_url(url)}: {exc}. Check DATABASE_URL and that the "
                "server is running."
            ) from exc
        return cls(engine)

    @property
    def url(self) -> URL:
        return self.engine.url

    @asynccontextmanager
    async def session(self, *, read_only: bool = False, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends normally, rolls back if it raises.

        `read_only=True` never commits and refuses to flush changes; on SQLite it runs beside the
        writer (WAL) instead of waiting for it. `urgent=True` (a member waits for the answer) goes
        before background writes when SQLite's writers queue.
        """
        if read_only:
            async with self._sessions() as session:
                event.listen(session.sync_session, "before_flush", _refuse_writes)
                await session.connection(execution_options={_READ_ONLY_OPTION: True})
                yield session
            return
        # On an exception the commit is skipped and closing the session rolls back.
        async with self._one_writer(urgent=urgent), self._sessions() as session:
            yield session
            await session.commit()

    @asynccontextmanager
    async def _one_writer(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._turns is None:
            yield
            return
        task = asyncio.current_task()
        if task is not None and task is self._writer:
            # The outer session holds SQLite's write lock, so the inner one could never get it.
            raise StoreError(
                "A write session was opened inside another one in the same task; on SQLite that "
                "waits for itself. Finish the outer unit of work first, or pass read_only=True."
            )
        async with self._turns.turn(urgent=urgent):
            self._writer = task
            try:
                yield
            finally:
                self._writer = None

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
