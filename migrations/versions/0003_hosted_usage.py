"""hosted engines: images in the usage ledger, and a per-day cap on hosted-engine images

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 16:00:00.000000

`usage.images` counts the images each job made (0 for ledger rows written before this revision: the
count was not kept) and `usage.hosted` says a paid API made them (false before: only local engines
existed). `quota_rules.images_per_day` caps hosted-engine images per member per day; NULL = no cap.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("images", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("hosted", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("quota_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("images_per_day", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quota_rules", schema=None) as batch_op:
        batch_op.drop_column("images_per_day")
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_column("hosted")
        batch_op.drop_column("images")
