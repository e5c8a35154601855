"""Persistence: SQLAlchemy 2 async models, the database handle, queries and migrations.

Build one `Database` in the composition root, run `await migrate.upgrade(url)` first, and pass the
database down; each unit of work is `async with db.session() as session: await queries.x(session, ...)`.
Keep units short (no Discord calls inside): on SQLite writers take turns. Pure reads may use
`db.session(read_only=True)`, which runs beside the writer.
"""

from __future__ import annotations

from bot.store.db import Database
from bot.store.errors import DatabaseUnavailable, JobNotFound, JobStateError, MigrationError, StoreError
from bot.store.models import (
    Base,
    GuildSettings,
    Image,
    Job,
    JobKind,
    JobStatus,
    QuotaRule,
    QuotaScope,
    UsageEntry,
    UserSettings,
    new_job_id,
    utcnow,
)

__all__ = [
    "Base",
    "Database",
    "DatabaseUnavailable",
    "GuildSettings",
    "Image",
    "Job",
    "JobKind",
    "JobNotFound",
    "JobStateError",
    "JobStatus",
    "MigrationError",
    "QuotaRule",
    "QuotaScope",
    "StoreError",
    "UsageEntry",
    "UserSettings",
    "new_job_id",
    "utcnow",
]
