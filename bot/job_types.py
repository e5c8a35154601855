"""What the job service and its callers share: who asks, a job as a message shows it, and the
`Presenter` that shows it (no Discord here; `bot.presenter` implements it over Discord)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from PIL import Image as PILImage

from bot import job_records as records
from bot.policy import Limits, Usage
from bot.store.models import Job, JobKind

__all__ = ["ButtonAction", "JobCard", "Presenter", "Requester", "UserInfo"]


class ButtonAction(enum.StrEnum):
    UPSCALE = "u"
    VARIATION = "v"
    REROLL = "r"
    VARY_STRONG = "vs"
    VARY_SUBTLE = "vt"

    @property
    def is_variation(self) -> bool:
        return self in (ButtonAction.VARIATION, ButtonAction.VARY_STRONG, ButtonAction.VARY_SUBTLE)

    @property
    def variation(self) -> str:
        return "Subtle" if self is ButtonAction.VARY_SUBTLE else "Strong"


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, and where."""

    user_id: int
    guild_id: int | None
    channel_id: int
    role_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class JobCard:
    """What a message about one job needs, detached from the database session."""

    job_id: str
    kind: JobKind
    user_id: int
    guild_id: int | None
    channel_id: int
    message_id: int | None
    prompt: str
    parent_index: int | None = None
    variation: str | None = None
    """`Strong` or `Subtle` for variations, worded as Midjourney does."""
    source_url: str | None = None
    """Link to the grid an upscale came from."""

    @classmethod
    def from_job(cls, job: Job) -> JobCard:
        ui = records.ui_params(job)
        return cls(
            job_id=job.id,
            kind=job.kind,
            user_id=job.user_id,
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            message_id=job.message_id,
            prompt=job.prompt,
            parent_index=job.parent_index,
            variation=ui.get("variation"),
            source_url=ui.get("source_url"),
        )


class Presenter(Protocol):
    """Shows a job's life to its owner; each method retries transient failures itself."""

    async def show_waiting(self, card: JobCard) -> int | None:
        """Post the job's own message; return its id (None if it could not be posted)."""
        ...

    async def show_progress(self, card: JobCard, percent: int, preview: PILImage.Image | None) -> None: ...

    async def show_result(self, card: JobCard, attachment: Path) -> int | None:
        """Show the images with their buttons; return the id of the message that shows them."""
        ...

    async def show_failure(self, card: JobCard, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What /info shows."""

    active: tuple[tuple[Job, int | None, float | None], ...]
    usage: Usage
    limits: Limits
    resets_at: datetime
