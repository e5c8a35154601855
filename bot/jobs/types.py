"""What the job service and its callers share: who asks, a job as its message shows it, the ticket a
submission returns, and the `Presenter` that shows a job's life (no Discord here: `bot.presenter`
implements it over Discord, `bot.imagine_cli` on a terminal)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.jobs.conversions import ui_params
from bot.policy import Limits, Usage
from bot.store.models import Job, JobKind
from engine.images import SavedImages
from engine.queue import JobHandle
from engine.types import Progress

__all__ = [
    "OPERATOR",
    "ButtonAction",
    "JobCard",
    "JobTicket",
    "Notify",
    "Presenter",
    "Requester",
    "UserInfo",
]

Notify = Callable[[str], Awaitable[None]]
"""Tells a job's owner something only they see (on Discord: an ephemeral followup to their interaction);
handles its own failures."""


class ButtonAction(enum.StrEnum):
    """What a job button does; its value is the button's part of the custom_id."""

    UPSCALE = "u"
    VARIATION = "v"
    REROLL = "r"
    VARY_STRONG = "vs"
    VARY_SUBTLE = "vt"
    # Under an upscale: a second, gentler or bolder 2x, and the editing tools (`Mode.EDIT`).
    UPSCALE_SUBTLE = "us"
    UPSCALE_CREATIVE = "uc"
    VARY_REGION = "vr"
    ZOOM_OUT_2X = "z2"
    ZOOM_OUT_1_5X = "z15"
    CUSTOM_ZOOM = "zc"
    PAN_LEFT = "pl"
    PAN_RIGHT = "pr"
    PAN_UP = "pu"
    PAN_DOWN = "pd"
    MAKE_SQUARE = "sq"

    @property
    def is_variation(self) -> bool:
        return self in (ButtonAction.VARIATION, ButtonAction.VARY_STRONG, ButtonAction.VARY_SUBTLE)

    @property
    def variation(self) -> str:
        return "Subtle" if self is ButtonAction.VARY_SUBTLE else "Strong"

    @property
    def is_edit(self) -> bool:
        """Paints new or chosen area (inpainting): only an engine that can edit serves it."""
        return self in _EDITS

    @property
    def is_second_upscale(self) -> bool:
        """Upscale (Subtle) or Upscale (Creative): the upscale made 2x again."""
        return self in (ButtonAction.UPSCALE_SUBTLE, ButtonAction.UPSCALE_CREATIVE)

    @property
    def remixable(self) -> bool:
        """Remix mode asks for a new prompt before it runs (Vary (Region) and Custom Zoom always do)."""
        return self.is_variation or self.is_edit


_EDITS = frozenset(
    {
        ButtonAction.VARY_REGION,
        ButtonAction.ZOOM_OUT_2X,
        ButtonAction.ZOOM_OUT_1_5X,
        ButtonAction.CUSTOM_ZOOM,
        ButtonAction.PAN_LEFT,
        ButtonAction.PAN_RIGHT,
        ButtonAction.PAN_UP,
        ButtonAction.PAN_DOWN,
        ButtonAction.MAKE_SQUARE,
    }
)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, and where."""

    user_id: int
    guild_id: int | None
    channel_id: int
    role_ids: tuple[int, ...] = ()
    age_restricted: bool = False
    """The channel is one Discord marks age-restricted: the only kind where flagged images may be posted."""
    user_name: str | None = None
    """Their display name, kept with their jobs for the web gallery."""
    operator: bool = False
    """The bot's owner at its terminal (`imaginebot imagine`): no member limits or quotas apply, and
    the jobs are never resumed by the bot after a restart (nobody would see them)."""


OPERATOR = Requester(user_id=0, guild_id=None, channel_id=0, operator=True)
"""The requester of `imaginebot imagine`."""


_EDIT_HEADS = {"zoom": "Zoom Out", "square": "Make Square", "region": "Vary (Region)"}
"""What an edit is called, as Midjourney does (a pan names its direction: `Pan Left`)."""


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
    upscale: str | None = None
    """`Subtle` or `Creative` for Upscale (Subtle/Creative); None for a U button's upscale."""
    edit: str | None = None
    """An edit job's `GenerationRequest.edit` (`zoom 2`, `pan left`, `square`, `region 1 5`)."""
    image_size: tuple[int, int] | None = None
    """(width, height) of one image of the job (a grid's cell, an upscale's image) once it has run, as
    the result or `/show` knows it: Make Square is offered only under an upscale that is not square."""
    age_restricted: bool = False
    """Asked for in a channel Discord marks age-restricted (`Requester.age_restricted`)."""
    spoiler: bool = False
    """Post its images behind Discord's spoiler blur: the safety check flagged them, and the server's
    rule for its age-restricted channels is `spoiler`."""
    model: str | None = None
    """The `--v`/`--niji` alias the job asked for (None = the default model): its engine decides which
    buttons its images get (`engine.backend.Capabilities.edits`)."""

    @property
    def what(self) -> str | None:
        """How Midjourney names a job made by a button (`Variations (Strong)`, `Zoom Out`, `Pan Left`);
        None for a grid and for a U button's upscale (its message names the image instead)."""
        if self.kind is JobKind.VARIATION:
            return f"Variations ({self.variation})" if self.variation else "Variations"
        if self.kind is JobKind.UPSCALE and self.upscale:
            return f"Upscaled ({self.upscale})"
        if self.edit:
            operation, *rest = self.edit.split()
            if operation == "pan" and rest:
                return f"Pan {rest[0].capitalize()}"
            return _EDIT_HEADS.get(operation, operation.capitalize())
        return None

    @classmethod
    def from_job(cls, job: Job) -> JobCard:
        ui = ui_params(job)
        request = (job.params or {}).get("request", {})
        edit = request.get("edit")
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
            upscale=ui.get("upscale"),
            edit=edit or None,
            age_restricted=bool(ui.get("age_restricted", False)),
            model=request.get("model"),
        )


class JobTicket:
    """A job just submitted. The job service follows it from this moment until it has ended and been
    shown; the submitter says once, with `show_in`, which message shows it."""

    def __init__(self, card: JobCard, handle: JobHandle) -> None:
        self.card = card
        self.handle = handle
        self.notify: Notify | None = None
        """How to tell the owner something privately, when the submitter can (`show_in`)."""
        self._message: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def show_in(self, message_id: int | None, *, notify: Notify | None = None) -> None:
        """Show the job in message `message_id` (the answer to the member's interaction), or in a
        message of its own when None; `notify` reaches the owner privately. Only the first call counts."""
        if not self._message.done():
            self.notify = notify
            self._message.set_result(message_id)

    async def message_id(self) -> int | None:
        """Wait for `show_in`."""
        return await asyncio.shield(self._message)

    def __repr__(self) -> str:
        return f"<JobTicket {self.card.job_id} {self.card.kind.value}>"


class Presenter(Protocol):
    """Shows a job's life to its owner; each method handles (retries, logs) its own failures."""

    progress_interval_s: float
    """Progress is shown at most this often per job (the latest wins)."""

    async def show_waiting(self, card: JobCard) -> int | None:
        """Post the job's own message; return its id (None if there is no message to edit later)."""
        ...

    async def show_progress(self, card: JobCard, progress: Progress) -> None:
        """Where the job has got to, with a preview of the images when the engine made one."""
        ...

    async def show_result(self, card: JobCard, saved: SavedImages) -> int | None:
        """Show the images with their buttons; return the id of the message that shows them."""
        ...

    async def show_failure(self, card: JobCard, reason: str) -> None: ...

    async def show_moderated(self, card: JobCard, reason: str) -> None:
        """The safety check withheld the job's images (or refused its picture): no image, and `reason`."""
        ...


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What /info shows: active jobs with (position, seconds left), today's finished usage, limits."""

    active: tuple[tuple[Job, int | None, float | None], ...]
    usage: Usage
    limits: Limits
    resets_at: datetime
