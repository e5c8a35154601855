"""web gallery: who sees a server's jobs, the owner's name and the aspect ratio on each job

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 19:00:00.000000

`guild_settings.gallery` is `off`, `members` or `public` (a str Enum's value, VARCHAR(16) with no CHECK,
as in 0001); existing servers get `off`. `jobs.user_name` is NULL for existing jobs (the name was not
kept); `jobs.aspect` (`16:9`) is filled from the request each row keeps in `params`. The index on
(guild_id, created_at) serves the gallery's newest-first pages of one server.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
        batch_op.create_index("ix_jobs_guild_id_created_at", ["guild_id", "created_at"], unique=False)
    fill = _FILL_ASPECT.get(op.get_bind().dialect.name)
    if fill is not None:  # elsewhere old jobs keep no aspect; the gallery's filter finds only new ones
        op.execute(fill)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_guild_id_created_at")
        batch_op.drop_column("aspect")
        batch_op.drop_column("user_name")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("gallery")
