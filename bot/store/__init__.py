"""Persistence: SQLAlchemy 2 async models, the database handle, queries and migrations.

Build one `Database` in the composition root (`bot.services`), run `await migrate.upgrade(url)`
first, and pass the database down; each unit of work is
`async with db.session() as session: await queries.x(session, ...)`. Keep units short (no Discord
calls inside): on SQLite writers take turns. Pure reads use `db.session(read_only=True)`, which runs
beside the writer.
"""

from __future__ import annotations

from bot.store.db import Database
from bot.store.errors import DatabaseUnavailable, JobNotFound, JobStateError, MigrationError, StoreError
from bot.store.models import (
    UNFINISHED,
    Base,
    GuildRules,
    Image,
    Job,
    JobKind,
    JobStatus,
    QuotaRule,
    UsageEntry,
    UserPreferences,
    new_job_id,
    utcnow,
)

__all__ = [
    "UNFINISHED",
    "Base",
    "Database",
    "DatabaseUnavailable",
    "GuildRules",
    "Image",
    "Job",
    "JobKind",
    "JobNotFound",
    "JobStateError",
    "JobStatus",
    "MigrationError",
    "QuotaRule",
    "StoreError",
    "UsageEntry",
    "UserPreferences",
    "new_job_id",
    "utcnow",
]
