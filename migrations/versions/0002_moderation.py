"""moderation: what a server's flagged images get, and which jobs the safety check flagged

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 13:30:00.000000

`guild_settings.flagged_images` is `block`, `spoiler` or `allow` (a str Enum's value, VARCHAR(16) with no
CHECK, as in 0001); existing servers get `block`. `jobs.flagged` is false for every existing job. The new
job status `moderated` needs no change: statuses are plain VARCHAR values.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a NOT NULL column in place everywhere, so it copies the table.
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("flagged_images", sa.String(length=16), server_default="block", nullable=False)
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("flagged")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("flagged_images")
