"""Apply the Alembic history: on bot start (`await upgrade(url)`) and for `imaginebot migrate`.

Alembic is synchronous and keeps global state, so each run happens in a worker thread with its own
event loop and engine, one at a time; the caller's event loop never waits on it. All steps of a run
share one transaction: a failure leaves the database as it was (PostgreSQL and SQLite both have
transactional DDL).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL, Connection

from bot.store.db import create_engine, display_url, normalize_url
from bot.store.errors import MigrationError, StoreError
from migrations import ALEMBIC_INI

__all__ = [
    "MigrationReport",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "main",
    "upgrade",
]

_Action = Literal["upgrade", "downgrade", "current"]
_alembic_lock = threading.Lock()  # alembic.context is a process-wide proxy


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a run did: the revision before and after, and the steps applied in order."""

    url: str
    before: str | None
    after: str | None
    steps: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def __str__(self) -> str:
        if not self.changed:
            return (
                f"Database {self.url} is already at revision {self.after or 'base (empty)'}; nothing to do."
            )
        done = "".join(f"\n  {step}" for step in self.steps)
        return (
            f"Database {self.url} migrated from {self.before or 'base (empty)'} "
            f"to {self.after or 'base (empty)'}:{done}"
        )


def alembic_config() -> Config:
    """The Alembic config of the shipped `migrations` package, usable from any working directory."""
    return Config(str(ALEMBIC_INI))


def head_revision() -> str | None:
    """The newest revision in the shipped history."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str | URL, revision: str = "head", *, config: Config | None = None) -> MigrationReport:
    """Bring the database at `url` up to `revision` (default: the newest).

    `config` replaces the shipped history (tests, or a deployment that adds its own revisions).
    """
    return await asyncio.to_thread(_run_in_thread, url, "upgrade", revision, config)


async def downgrade(
    url: str | URL, revision: str = "base", *, config: Config | None = None
) -> MigrationReport:
    """Take the database at `url` back to `revision` (`base` drops every table)."""
    return await asyncio.to_thread(_run_in_thread, url, "downgrade", revision, config)


async def current_revision(url: str | URL) -> str | None:
    """The revision the database is at; None for an empty database."""
    report = await asyncio.to_thread(_run_in_thread, url, "current", "", None)
    return report.after


def _run_in_thread(url: str | URL, action: _Action, revision: str, config: Config | None) -> MigrationReport:
    with _alembic_lock:
        return asyncio.run(_run(url, action, revision, config or alembic_config()))


async def _run(url: str | URL, action: _Action, revision: str, config: Config) -> MigrationReport:
    shown = display_url(normalize_url(url))
    # Foreign keys off on SQLite: batch mode recreates tables, and dropping a parent table with
    # enforcement on would cascade-delete its children. `_apply` checks the keys afterwards.
    engine = create_engine(url, foreign_keys=False)
    try:
        async with engine.connect() as connection:
            report = await connection.run_sync(_apply, config, action, revision, shown)
            await connection.commit()
        return report
    except StoreError:
        raise
    except CommandError as exc:
        raise MigrationError(f"Cannot {action} {shown} to {revision!r}: {exc}") from exc
    except Exception as exc:  # a revision's own bug too: the bot must not start half-migrated
        raise MigrationError(
            f"Migrating {shown} failed and was rolled back: {exc}. Check DATABASE_URL and that the "
            "database is reachable and writable."
        ) from exc
    finally:
        await engine.dispose()


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _apply(
    connection: Connection, config: Config, action: _Action, revision: str, shown: str
) -> MigrationReport:
    # Reading the revision first opens the transaction; Alembic then runs inside it.
    before = _revision_of(connection)
    if action == "current":
        return MigrationReport(shown, before, before)
    _check_known(config, before, shown)
    config.attributes["connection"] = connection
    try:
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
    finally:
        del config.attributes["connection"]
    after = _revision_of(connection)
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise MigrationError(
                f"Migrating {shown} would leave {len(broken)} rows pointing at missing rows "
                f"(first: table {broken[0][0]}); nothing was changed."
            )
    return MigrationReport(shown, before, after, _steps(config, before, after, action))


def _check_known(config: Config, revision: str | None, shown: str) -> None:
    if revision is None:
        return
    try:
        known = ScriptDirectory.from_config(config).get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise MigrationError(
            f"Database {shown} is at revision {revision}, which this version of imaginebot does not know: "
            "a newer version migrated it. Run that version again, or restore a backup taken before it."
        )


def _steps(config: Config, before: str | None, after: str | None, action: _Action) -> tuple[str, ...]:
    if before == after:
        return ()
    script = ScriptDirectory.from_config(config)
    upper, lower = (after, before) if action == "upgrade" else (before, after)
    revisions = list(script.iterate_revisions(upper or "base", lower or "base"))
    if action == "upgrade":
        revisions.reverse()
    verb = "applied" if action == "upgrade" else "reverted"
    return tuple(f"{verb} {rev.revision}: {rev.doc}" for rev in revisions)


def main(database_url: str) -> int:
    """`imaginebot migrate`: upgrade the configured database to the newest revision; 0 on success."""
    try:
        report = asyncio.run(upgrade(database_url))
    except StoreError as exc:
        print(f"imaginebot migrate: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0
