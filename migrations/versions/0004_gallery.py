"""web gallery: who sees a server's jobs, the owner's name and the aspect ratio on each job

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 19:00:00.000000

`guild_settings.gallery` is `off`, `members` or `public` (a str Enum's value, VARCHAR(16) with no CHECK,
as in 0001); existing servers get `off`. `jobs.user_name` is NULL for existing jobs (the name was not
kept); `jobs.aspect` (`16:9`) is filled from the request each row keeps in `params`.

`ix_jobs_gallery` serves the gallery's newest-first pages of one server and its word search (measured
in bench/gallery.py over 100,000 jobs). On SQLite a B-tree on (guild_id, created_at, prompt): a search
tests each prompt in the index, not in its row. On PostgreSQL a GIN index over the same columns with
the trusted extensions btree_gin and pg_trgm, which this revision installs (the database's owner
may); where the server lacks them or the user may not install them, a B-tree on (guild_id,
created_at) instead, with a warning: searches then read every job of the server. The downgrade
leaves the extensions installed (something else may use them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

_INDEX = "ix_jobs_gallery"
_SEARCH_EXTENSIONS = ("btree_gin", "pg_trgm")

# The request's aspect ratio is a two-number JSON list at params.request.aspect_ratio.
_FILL_ASPECT = {
    "sqlite": (
        "UPDATE jobs SET aspect = json_extract(params, '$.request.aspect_ratio[0]') || ':' || "
        "json_extract(params, '$.request.aspect_ratio[1]') "
        "WHERE json_extract(params, '$.request.aspect_ratio[1]') IS NOT NULL"
    ),
    "postgresql": (
        "UPDATE jobs SET aspect = (params->'request'->'aspect_ratio'->>0) || ':' || "
        "(params->'request'->'aspect_ratio'->>1) "
        "WHERE params->'request'->'aspect_ratio'->>1 IS NOT NULL"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gallery", sa.String(length=16), server_default="off", nullable=False))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("aspect", sa.String(length=16), nullable=True))
    _create_gallery_index()
    fill = _FILL_ASPECT.get(op.get_bind().dialect.name)
    if fill is not None:  # elsewhere old jobs keep no aspect; the gallery's filter finds only new ones
        op.execute(fill)


def _create_gallery_index() -> None:
    columns = ["guild_id", "created_at", "prompt"]
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(_INDEX, "jobs", columns, unique=False)
    elif _install_search_extensions():
        op.create_index(
            _INDEX, "jobs", columns, postgresql_using="gin", postgresql_ops={"prompt": "gin_trgm_ops"}
        )
    else:
        op.create_index(_INDEX, "jobs", ["guild_id", "created_at"], unique=False)


def _install_search_extensions() -> bool:
    """Install btree_gin and pg_trgm (if not yet there); False, with a warning, where it cannot be done."""
    if context.is_offline_mode():  # a script for someone else to run: they need the extensions
        for name in _SEARCH_EXTENSIONS:
            op.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
        return True
    bind = op.get_bind()
    names = ", ".join(f"'{name}'" for name in _SEARCH_EXTENSIONS)
    found = bind.execute(sa.text(f"SELECT name FROM pg_available_extensions WHERE name IN ({names})"))
    if missing := sorted(set(_SEARCH_EXTENSIONS) - set(found.scalars())):
        return _without_extensions(f"this server lacks {', '.join(missing)} (PostgreSQL's contrib modules)")
    try:
        with bind.begin_nested():  # a failed CREATE must not abort the migration's transaction
            for name in _SEARCH_EXTENSIONS:
                bind.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS {name}"))
    except sa.exc.DBAPIError as exc:
        return _without_extensions(f"installing them failed: {str(exc.orig).strip()}")
    return True


def _without_extensions(reason: str) -> bool:
    log.warning(
        "The web gallery's word search needs the PostgreSQL extensions btree_gin and pg_trgm to be fast; "
        "%s. Searches will read every job of a server. Install them as a superuser (CREATE EXTENSION "
        "btree_gin; CREATE EXTENSION pg_trgm;), then create the index %s as migration 0004 does.",
        reason,
        _INDEX,
    )
    return False


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("aspect")
        batch_op.drop_column("user_name")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("gallery")
