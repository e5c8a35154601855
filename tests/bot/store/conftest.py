"""Fixtures: a migrated database per test, on SQLite and on PostgreSQL.

PostgreSQL: `IMAGINE_TEST_POSTGRES_URL` names a server to use (CI sets it), as an admin URL such as
postgresql://postgres@127.0.0.1:5432/postgres; one that does not answer is an error. Otherwise a throwaway
cluster is started from the local PostgreSQL install (`initdb`/`pg_ctl`, as the `postgres` user when running
as root), listening on a socket only. When neither is possible the PostgreSQL cases are skipped and say why.
Every database a test session creates has a random name and is dropped at the end, so sessions sharing one
server never meet.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text

from bot.store import Base, Database
from bot.store.db import create_engine, display_url, normalize_url
from bot.store.migrate import upgrade

BACKENDS = ["sqlite", "postgresql"]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root and `runuser` is missing, so no PostgreSQL server can be started")
    return [runuser, "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL server for this test session."""
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed (pip install -e '.[postgres]')")
    given = os.environ.get("IMAGINE_TEST_POSTGRES_URL")
    if given:
        url = normalize_url(given).render_as_string(hide_password=False)
        try:
            _blocking(_admin(url, "SELECT 1"))
        except Exception as exc:
            raise RuntimeError(
                f"IMAGINE_TEST_POSTGRES_URL={display_url(given)} is set, but that PostgreSQL does not "
                f"answer: {exc}"
            ) from exc
        yield url
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed and IMAGINE_TEST_POSTGRES_URL is not set")
    # Not under pytest's tmp dir: the `postgres` user cannot enter root's private folders.
    root = Path(tempfile.mkdtemp(prefix="imaginebot-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    _run(
        _as_postgres_user(
            [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]
        ),
    )
    options = f"-c listen_addresses='' -k {root} -c fsync=off -c full_page_writes=off"
    _run(_as_postgres_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]))
    try:
        yield f"postgresql+asyncpg://postgres@/postgres?host={root}"
    finally:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_engine(admin_url)
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(statement))
    finally:
        await engine.dispose()


def _blocking(work: Coroutine[Any, Any, object]) -> None:
    # Session fixtures may be first requested from inside a test's running loop; use a fresh one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


def _create_database(name: str) -> str:
    # From template0, which takes no connections: copying template1 fails while anyone on the shared
    # server is connected to it.
    return f"CREATE DATABASE {name} TEMPLATE template0"


def _database_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated once per session; tests get copies (migrating each one is slower)."""
    path = tmp_path_factory.mktemp("template") / "bot.db"
    _blocking(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_migrated(postgres_admin_url: str) -> Iterator[str]:
    """A PostgreSQL database migrated once per session; each test empties it afterwards."""
    name = f"imaginebot_migrated_{uuid.uuid4().hex[:12]}"
    _blocking(_admin(postgres_admin_url, _create_database(name)))
    try:
        url = _database_url(postgres_admin_url, name)
        _blocking(upgrade(url))
        yield url
    finally:
        _blocking(_admin(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    # A subfolder that does not exist yet: connecting must create it.
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bot.db'}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _postgres_database(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    name = f"imaginebot_test_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, _create_database(name))
    try:
        yield _database_url(admin_url, name)
    finally:
        await _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db_url(request: pytest.FixtureRequest, backend: str, sqlite_url: str) -> AsyncIterator[str]:
    """An empty database: an SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield sqlite_url
        return
    async for url in _postgres_database(request):
        yield url


@pytest.fixture
async def migrated_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database already at the newest revision, with no rows."""
    if backend == "sqlite":
        path = tmp_path / "bot.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_migrated")
    try:
        yield url
    finally:
        # Faster than a database per test; every table goes, the schema stays.
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        await _admin(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    """A migrated database (the real schema from the Alembic history, not `create_all`)."""
    database = await Database.connect(migrated_url)
    try:
        yield database
    finally:
        await database.close()
