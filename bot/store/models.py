"""The database schema as SQLAlchemy 2 declarative models.

Every change here needs a new Alembic revision in `migrations/versions/` (a test compares the two).
JSON columns are replaced, never mutated in place: assign a new list or dict so the change is saved.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.policy import FlaggedImages, GalleryAccess, QuotaScope

__all__ = [
    "NAMING_CONVENTION",
    "UNFINISHED",
    "Base",
    "GuildRules",
    "Image",
    "Job",
    "JobKind",
    "JobStatus",
    "QuotaRule",
    "UsageEntry",
    "UserPreferences",
    "UtcDateTime",
    "new_job_id",
    "utcnow",
]

# Named constraints let batch migrations on SQLite (which recreate tables) find and drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSON_VALUE = JSON().with_variant(JSONB(), "postgresql")
"""JSON; JSONB on PostgreSQL (comparable and indexable, unlike its plain `json`)."""

MAX_NAME_LENGTH: Final = 100
"""A Discord display name is at most 32 characters; room to spare."""

CELL_INDEXES = (1, 4)
"""Grid cells are numbered 1 top-left … 4 bottom-right, as Midjourney numbers them."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_job_id() -> str:
    """A fresh job id: 32 hex characters (uuid4)."""
    return uuid.uuid4().hex


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no timezone type and drops the offset, so values are converted to UTC before they are
    written (comparisons then work on both SQLite and PostgreSQL) and naive values read back are UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"store timestamps must be timezone-aware (UTC); got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobKind(enum.StrEnum):
    IMAGINE = "imagine"
    VARIATION = "variation"
    UPSCALE = "upscale"
    """U1–U4 on a grid, and Upscale (Subtle/Creative) on an upscale (its `ui` says which)."""
    REROLL = "reroll"
    ZOOM = "zoom"
    """Zoom Out 2x/1.5x and Custom Zoom on an upscale: four fills around the image, shrunk."""
    PAN = "pan"
    """⬅️ ➡️ ⬆️ ⬇️ on an upscale: four fills of the canvas grown one way."""
    SQUARE = "square"
    """Make Square on an upscale that is not square."""
    REGION = "region"
    """Vary (Region) on an upscale: four repaints of the cells the member picked."""


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MODERATED = "moderated"
    """Ended by the safety check: its picture or its images were flagged and withheld; nothing was kept."""

    @property
    def finished(self) -> bool:
        return self not in UNFINISHED


UNFINISHED: Final = (JobStatus.QUEUED, JobStatus.RUNNING)
"""A job in one of these states is still the queue's: waiting or running."""


def _str_enum(enum_class: type[enum.StrEnum]) -> Enum:
    # VARCHAR holding the enum's value (not its name), no native type or CHECK: adding a member
    # later needs no migration on PostgreSQL.
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """One generation: a fresh grid, a variation or upscale of a cell, a re-roll, or an edit of an upscale."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            f"parent_index IS NULL OR parent_index BETWEEN {CELL_INDEXES[0]} AND {CELL_INDEXES[1]}",
            name="parent_index_is_cell",
        ),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_user_id_created_at", "user_id", "created_at"),
        # The web gallery's: a server's jobs by date, and the words of their prompts. On PostgreSQL a
        # GIN index (btree_gin for the server and the dates, pg_trgm for `ILIKE '%word%'`); elsewhere a
        # B-tree whose entries carry the prompt, so a search tests each prompt without reading its row.
        # Migration 0004 falls back to a B-tree on (guild_id, created_at) where the extensions are missing.
        Index(
            "ix_jobs_gallery",
            "guild_id",
            "created_at",
            "prompt",
            postgresql_using="gin",
            postgresql_ops={"prompt": "gin_trgm_ops"},
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    kind: Mapped[JobKind] = mapped_column(_str_enum(JobKind))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    parent_index: Mapped[int | None] = mapped_column(SmallInteger)
    """The parent's cell (1–4) a variation, upscale or edit starts from (1 for an upscale's own image);
    NULL for imagine and re-roll."""

    user_id: Mapped[int] = mapped_column(BigInteger)
    user_name: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    """The owner's display name when they asked (the web gallery shows it); NULL when unknown."""
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    """The bot's channel message that shows this job (progress, then the result)."""

    prompt: Mapped[str] = mapped_column(Text)
    """The canonical prompt text (`str(request)`), parameters included."""
    params: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE, default=dict)
    model: Mapped[str | None] = mapped_column(String(500))
    """The model alias asked for, then the model that actually ran; NULL = the default model."""
    aspect: Mapped[str | None] = mapped_column(String(16))
    """The request's aspect ratio as `W:H` (`16:9`), for the gallery's filter; NULL when it has none."""
    seed: Mapped[int] = mapped_column(BigInteger)
    seeds: Mapped[list[int]] = mapped_column(JSON_VALUE, default=list)
    """Per-image seeds, in cell order, once the job has run."""

    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the job was started; recovery gives up on a job that keeps crashing the bot."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    grid_path: Mapped[str | None] = mapped_column(String(500))
    """The posted image (grid, or the single upscaled image), relative to the data dir."""
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The safety check flagged its start picture or an image it made (kept only where the server's
    rule let it be posted in an age-restricted channel; `moderated` jobs kept nothing)."""

    images: Mapped[list[Image]] = relationship(
        back_populates="job",
        order_by="Image.index",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",  # always wanted with the job, and async code cannot lazy-load
    )
    parent: Mapped[Job | None] = relationship(remote_side=[id], lazy="raise_on_sql")
    """Only when already loaded; otherwise fetch it with `queries.get_job(session, job.parent_id)`."""

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status}>"


class Image(Base):
    """One stored file of a job: index 0 is the grid, 1–4 the cells (an upscale stores index 1)."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(SmallInteger)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))
    """Relative to the data dir, so the data dir can move."""

    job: Mapped[Job] = relationship(back_populates="images", lazy="raise_on_sql")

    def __repr__(self) -> str:
        return f"<Image {self.job_id}#{self.index} {self.width}x{self.height}>"


class GuildRules(Base):
    """A server's rules, set by its admins with /config: banned words, channels, who may press buttons,
    what flagged images get."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    banned_words: Mapped[list[str]] = mapped_column(JSON_VALUE, default=list)
    allowed_channel_ids: Mapped[list[int]] = mapped_column(JSON_VALUE, default=list)
    """Channels where /imagine works; empty = everywhere."""
    buttons_owner_only: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged_images: Mapped[FlaggedImages] = mapped_column(
        _str_enum(FlaggedImages), default=FlaggedImages.BLOCK, server_default=FlaggedImages.BLOCK.value
    )
    """What flagged images get in the server's age-restricted channels (elsewhere: always withheld)."""
    gallery: Mapped[GalleryAccess] = mapped_column(
        _str_enum(GalleryAccess), default=GalleryAccess.OFF, server_default=GalleryAccess.OFF.value
    )
    """Who sees the server's jobs in the web gallery besides their owners (`/config gallery`)."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class QuotaRule(Base):
    """A limit for a whole server, for each member with a role, or for one member; NULL = no limit."""

    __tablename__ = "quota_rules"
    __table_args__ = (
        UniqueConstraint("guild_id", "scope", "target_id"),
        CheckConstraint("(scope = 'guild') = (target_id IS NULL)", name="target_matches_scope"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[QuotaScope] = mapped_column(_str_enum(QuotaScope))
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    jobs_per_day: Mapped[int | None] = mapped_column(Integer)
    gpu_minutes_per_day: Mapped[float | None] = mapped_column(Float)
    max_waiting: Mapped[int | None] = mapped_column(Integer)
    max_running: Mapped[int | None] = mapped_column(Integer)
    images_per_day: Mapped[int | None] = mapped_column(Integer)
    """Images from hosted engines (paid per image) per day."""


class UsageEntry(Base):
    """One line of the usage ledger, written when a job succeeds; quotas sum it over a window."""

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_user_id_at", "user_id", "at"),
        Index("ix_usage_guild_id_at", "guild_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    """The engine's wall time for the job (on a hosted engine: waiting for its API)."""
    jobs: Mapped[int] = mapped_column(Integer, default=1)
    images: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Images the job made."""
    hosted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A hosted engine made them (`/quota` images per day counts these)."""


class UserPreferences(Base):
    """A member's preferences, set with /settings: remix mode, default prompt parameters, model alias."""

    __tablename__ = "user_settings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    remix: Mapped[bool] = mapped_column(Boolean, default=False)
    defaults: Mapped[dict[str, str]] = mapped_column(JSON_VALUE, default=dict)
    """Parameter defaults for `bot.prompt.parse`, e.g. {"ar": "16:9", "s": "250"}."""
    model: Mapped[str | None] = mapped_column(String(100))
    """A model alias from the config (`--v`/`--niji` name); NULL = the server default."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
