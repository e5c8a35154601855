"""The job service: request → policy → database row → queue → progress → files → result message.

No Discord here. Messages go through a `Presenter` (the Discord one lives in `bot.presenter`), so
a job's life is the same whether it came from /imagine, a button or recovery after a restart.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from PIL import Image as PILImage

from bot import job_records as records
from bot.policy import (
    Limits,
    Usage,
    check_banned_words,
    check_button_press,
    check_channel,
    check_job_counts,
    check_quota,
    day_window,
    resolve_limits,
)
from bot.prompt import PromptLimits, parse
from bot.requests import to_generation_request
from bot.settings import Settings
from bot.store.db import Database
from bot.store.models import Image, Job, JobKind, JobStatus, UsageEntry, utcnow
from bot.user_errors import BotError, UnknownJob, user_message
from engine.errors import EngineError, JobCancelled, JobInterrupted, QueueError
from engine.images import save_job_images
from engine.queue import JobFailed, JobFinished, JobHandle, JobProgress, JobQueue, JobStarted
from engine.types import GRID_SIZE, VARY_STRONG, VARY_SUBTLE, GenerationRequest, GenerationResult, Mode

__all__ = [
    "MAX_ATTEMPTS",
    "ButtonAction",
    "JobCard",
    "JobService",
    "Presenter",
    "Requester",
    "UserInfo",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""A job that was started this many times without finishing (it keeps killing the bot) is failed."""

_STRENGTH = {"Strong": VARY_STRONG, "Subtle": VARY_SUBTLE}


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


def _new_seed() -> int:
    return secrets.randbelow(2**32)


class JobService:
    """Runs every job of the bot; build one in the composition root and pass it down."""

    def __init__(
        self,
        *,
        db: Database,
        queue: JobQueue,
        settings: Settings,
        presenter: Presenter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        self.presenter = presenter
        self._clock = clock
        self._requests: dict[str, GenerationRequest] = {}
        self._handles: dict[str, JobHandle] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.prompt_limits = PromptLimits(
            max_length=settings.max_prompt_length,
            max_repeat=settings.max_repeat,
            max_permutations=settings.max_permutations,
            model_aliases=tuple(settings.model_aliases),
        )

    # --- policy ---------------------------------------------------------------------------

    async def limits_for(self, who: Requester) -> tuple[Limits, Usage]:
        async with self.db.session() as session:
            rules = await records.quota_rules(session, who.guild_id)
            start, _ = day_window(self._clock())
            usage = await records.usage_since(session, who.user_id, who.guild_id, start)
        limits = resolve_limits(
            rules,
            user_id=who.user_id,
            role_ids=who.role_ids,
            default_max_waiting=self.settings.max_waiting_per_owner,
            default_max_running=self.settings.max_running_per_owner,
        )
        return limits, usage

    async def _check_policy(self, who: Requester, text: str | None, new_jobs: int) -> None:
        """Refuse before anything is stored or queued; raises a `PolicyError`."""
        async with self.db.session() as session:
            guild = await records.guild_settings(session, who.guild_id)
            waiting, running = await records.count_active(session, who.user_id)
        if guild is not None:
            check_channel(who.channel_id, guild.allowed_channel_ids or [])
            if text is not None:
                check_banned_words(text, guild.banned_words or [])
        limits, usage = await self.limits_for(who)
        check_quota(limits, usage, now=self._clock(), new_jobs=new_jobs)
        check_job_counts(limits, waiting=waiting, running=running, new_jobs=new_jobs)

    async def _parse(self, who: Requester, text: str) -> list[tuple[str, GenerationRequest]]:
        async with self.db.session() as session:
            prefs = await records.user_settings(session, who.user_id)
        defaults = dict(prefs.defaults or {}) if prefs else {}
        if prefs is not None and prefs.model and prefs.model in self.settings.model_aliases:
            defaults.setdefault("v", prefs.model)
        parsed = parse(text, limits=self.prompt_limits, defaults=defaults)
        out = []
        for request in parsed:
            seed = request.seed if request.seed is not None else _new_seed()
            out.append((str(request), to_generation_request(request, seed=seed)))
        return out

    # --- creating jobs --------------------------------------------------------------------

    async def imagine(self, who: Requester, text: str) -> list[JobCard]:
        """Parse, check, store and queue one job per request `text` expands to."""
        planned = await self._parse(who, text)
        await self._check_policy(who, text, len(planned))
        cards = []
        for prompt, request in planned:
            cards.append(await self._create(who, JobKind.IMAGINE, prompt, request))
        return cards

    async def press(
        self, who: Requester, action: ButtonAction, job_id: str, cell: int, *, remix_text: str | None = None
    ) -> JobCard:
        """A U/V/Vary/🔄 button: a new job from `job_id` (cell 1–4; 0 for a re-roll)."""
        async with self.db.session() as session:
            parent = await session.get(Job, job_id)
            if parent is None:
                raise UnknownJob(job_id)
            guild = await records.guild_settings(session, parent.guild_id)
            owner_only = bool(guild and guild.buttons_owner_only)
            check_button_press(presser_id=who.user_id, owner_id=parent.user_id, owner_only=owner_only)
            if parent.status is not JobStatus.SUCCEEDED:
                raise BotError("That job has no images yet; wait for it to finish.")
            if action.is_variation and parent.kind is JobKind.UPSCALE and parent.parent_id:
                # Vary an upscale from its grid cell: same composition, the size the model draws.
                cell, parent = parent.parent_index or 1, await session.get(Job, parent.parent_id) or parent
            init = await records.image_path(session, parent.id, cell) if cell else None
            snapshot = (
                parent.id,
                parent.prompt,
                dict(parent.params),
                list(parent.seeds or []),
                parent.message_id,
            )
            source = (parent.guild_id, parent.channel_id)
        parent_id, prompt, params, seeds, parent_message = snapshot
        request = records.params_to_request(params, self.settings.data_dir)
        if remix_text is not None:
            (prompt, request), *_ = await self._parse(who, remix_text)
        await self._check_policy(who, remix_text, 1)
        ui: dict[str, Any] = {}
        if action is ButtonAction.REROLL:
            kind = JobKind.REROLL
            request = replace(request, seed=_new_seed())
            init_rel = params.get("init") if request.mode is Mode.VARIATION else None
            cell_index: int | None = None
        else:
            if init is None or not (self.settings.data_dir / init).exists():
                raise BotError("The image for that button is gone from the bot's disk, so I cannot use it.")
            cell_index, init_rel = cell, init
            if action is ButtonAction.UPSCALE:
                kind = JobKind.UPSCALE
                seed = seeds[cell - 1] if len(seeds) >= cell else request.seed + cell - 1
                request = replace(request, mode=Mode.UPSCALE, count=1, seed=seed, strength=0.0)
                if parent_message is not None:
                    ui["source_url"] = _message_url(source[0], source[1], parent_message)
            else:
                kind = JobKind.VARIATION
                ui["variation"] = action.variation
                strength = _STRENGTH[action.variation]
                request = replace(
                    request, mode=Mode.VARIATION, count=GRID_SIZE, seed=_new_seed(), strength=strength
                )
        request = replace(request, init_image=self.settings.data_dir / init_rel if init_rel else None)
        return await self._create(
            who, kind, prompt, request, parent_id=parent_id, parent_index=cell_index, init=init_rel, ui=ui
        )

    async def _create(
        self,
        who: Requester,
        kind: JobKind,
        prompt: str,
        request: GenerationRequest,
        *,
        parent_id: str | None = None,
        parent_index: int | None = None,
        init: str | None = None,
        ui: dict[str, Any] | None = None,
    ) -> JobCard:
        async with self.db.session() as session:
            job = Job(
                kind=kind,
                parent_id=parent_id,
                parent_index=parent_index,
                user_id=who.user_id,
                guild_id=who.guild_id,
                channel_id=who.channel_id,
                prompt=prompt,
                params=records.request_to_params(request, init=init, **(ui or {})),
                model=request.model,
                seed=request.seed,
                status=JobStatus.QUEUED,
            )
            session.add(job)
            await session.flush()
            card = JobCard.from_job(job)
        log.info("job %s queued: %s by %s", card.job_id, kind.value, who.user_id)
        try:
            self._handles[card.job_id] = await self.queue.submit(
                str(who.user_id), request, job_id=card.job_id
            )
        except QueueError as exc:
            await self._finish(card.job_id, JobStatus.FAILED, error=str(exc))
            raise
        self._requests[card.job_id] = request
        return card

    # --- following a job ------------------------------------------------------------------

    def follow(self, card: JobCard) -> None:
        """Show the job's life in its message (posted now if `card.message_id` is None), in the background."""
        task = asyncio.create_task(self._follow(card), name=f"job-{card.job_id}")
        self._tasks[card.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(card.job_id, None))

    async def wait_idle(self) -> None:
        """Wait until every followed job has ended and been shown (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _follow(self, card: JobCard) -> None:
        presenter = self._presenter()
        handle = self._handles.pop(card.job_id, None) or self.queue.handle(card.job_id)
        if handle is None:
            raise RuntimeError(f"job {card.job_id} was never submitted to the queue")
        if card.message_id is None:
            card = await self._post_waiting(card)
        try:
            result = await self._watch(card, handle)
        except JobInterrupted:
            log.info("job %s interrupted by shutdown; it resumes on the next start", card.job_id)
            return
        except JobCancelled:
            await self._finish(card.job_id, JobStatus.CANCELLED, error="cancelled")
            await presenter.show_failure(card, "cancelled")
            return
        except EngineError as exc:
            reason = user_message(exc)
            await self._finish(card.job_id, JobStatus.FAILED, error=reason)
            await presenter.show_failure(card, reason)
            return
        except Exception as exc:
            reason = user_message(exc)
            await self._finish(card.job_id, JobStatus.FAILED, error=reason)
            await presenter.show_failure(card, reason)
            return
        await self._deliver(card, result)

    async def _post_waiting(self, card: JobCard) -> JobCard:
        message_id = await self._presenter().show_waiting(card)
        if message_id is not None:
            card = replace(card, message_id=message_id)
            await self.set_message(card.job_id, message_id)
        return card

    async def _watch(self, card: JobCard, handle: JobHandle) -> GenerationResult:
        presenter = self._presenter()
        last_edit = float("-inf")
        async for event in handle.events():
            if isinstance(event, JobStarted):
                await self._mark_running(card.job_id)
            elif isinstance(event, JobProgress):
                now = time.monotonic()
                # Latest wins: the queue coalesces unread progress, we drop what comes too soon.
                if now - last_edit >= self.settings.progress_interval_s:
                    last_edit = now
                    percent = min(99, int(event.progress.fraction * 100))
                    await presenter.show_progress(card, percent, event.progress.preview)
            elif isinstance(event, JobFinished | JobFailed):
                break
        return await handle.result()

    async def _deliver(self, card: JobCard, result: GenerationResult) -> None:
        request = self._requests.pop(card.job_id, None) or await self._load_request(card.job_id)
        folder = self.settings.data_dir / "images" / card.job_id[:2]
        saved = await save_job_images(
            result, request, folder, card.job_id, attachment_limit_bytes=self.settings.attachment_limit_bytes
        )
        rel = self._relative
        async with self.db.session() as session:
            job = await session.get(Job, card.job_id)
            if job is None:
                return
            if saved.grid is not None:
                session.add(
                    Image(
                        job_id=job.id,
                        index=0,
                        seed=None,
                        width=result.width * 2,
                        height=result.height * 2,
                        path=rel(saved.grid),
                    )
                )
            for index, path in enumerate(saved.images, start=1):
                image = result.images[index - 1]
                session.add(
                    Image(
                        job_id=job.id,
                        index=index,
                        seed=result.seeds[index - 1],
                        width=image.width,
                        height=image.height,
                        path=rel(path),
                    )
                )
            job.status = JobStatus.SUCCEEDED
            job.finished_at = self._clock()
            job.gpu_seconds = result.elapsed_s
            job.seeds = list(result.seeds)
            job.grid_path = rel(saved.attachment)
            job.model = result.model
            session.add(
                UsageEntry(
                    job_id=job.id, user_id=job.user_id, guild_id=job.guild_id, gpu_seconds=result.elapsed_s
                )
            )
        log.info("job %s succeeded in %.2fs on the device", card.job_id, result.elapsed_s)
        message_id = await self._presenter().show_result(card, saved.attachment)
        if message_id is not None and message_id != card.message_id:
            await self.set_message(card.job_id, message_id)

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.settings.data_dir))
        except ValueError:
            return str(path)

    async def _load_request(self, job_id: str) -> GenerationRequest:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise UnknownJob(job_id)
            return records.params_to_request(job.params, self.settings.data_dir)

    def _presenter(self) -> Presenter:
        if self.presenter is None:
            raise RuntimeError("JobService.presenter must be set before jobs are followed")
        return self.presenter

    # --- state changes --------------------------------------------------------------------

    async def set_message(self, job_id: str, message_id: int) -> None:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is not None:
                job.message_id = message_id

    async def _mark_running(self, job_id: str) -> None:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is not None and job.status is JobStatus.QUEUED:
                job.status = JobStatus.RUNNING
                job.started_at = self._clock()
                job.attempts = (job.attempts or 0) + 1
        log.info("job %s running", job_id)

    async def _finish(self, job_id: str, status: JobStatus, *, error: str) -> None:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is not None and not job.status.finished:
                job.status = status
                job.error = error
                job.finished_at = self._clock()
        log.info("job %s %s: %s", job_id, status.value, error)

    # --- commands around jobs -------------------------------------------------------------

    async def cancel(self, who: Requester, job_id: str | None = None) -> str:
        """Cancel the user's job `job_id` (default: their newest waiting or running one); return its id."""
        async with self.db.session() as session:
            if job_id is None:
                jobs = await records.active_jobs(session, who.user_id)
                if not jobs:
                    raise BotError("You have no waiting or running job to cancel.")
                job = jobs[-1]
            else:
                found = await session.get(Job, job_id)
                if found is None or found.user_id != who.user_id:
                    raise UnknownJob(job_id)
                job = found
            if job.status.finished:
                raise BotError(f"Job `{job.id}` already {job.status.value}; there is nothing to cancel.")
            card = JobCard.from_job(job)
        if not await self.queue.cancel(card.job_id):
            # Not in the queue (a stale row): end it here so it does not linger as "waiting".
            await self._finish(card.job_id, JobStatus.CANCELLED, error="cancelled")
            if card.job_id not in self._tasks:
                await self._presenter().show_failure(card, "cancelled")
        return card.job_id

    async def info(self, who: Requester) -> UserInfo:
        limits, usage = await self.limits_for(who)
        async with self.db.session() as session:
            jobs = await records.active_jobs(session, who.user_id)
        active = tuple((job, self.queue.position(job.id), self.queue.estimate(job.id)) for job in jobs)
        # The ledger's job count includes the active ones; /info shows finished work only.
        finished = Usage(jobs=usage.jobs - len(jobs), gpu_seconds=usage.gpu_seconds)
        _, resets_at = day_window(self._clock())
        return UserInfo(active=active, usage=finished, limits=limits, resets_at=resets_at)

    async def history(self, user_id: int, guild_id: int | None, limit: int = 10) -> Sequence[Job]:
        async with self.db.session() as session:
            return await records.recent_jobs(session, user_id, guild_id, limit)

    async def get(self, job_id: str) -> Job:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    # --- recovery -------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Re-queue the jobs a previous run left unfinished, or fail them with a notice: (resumed, failed)."""
        async with self.db.session() as session:
            jobs = list(await records.unfinished_jobs(session))
        resumed = failed = 0
        for job in jobs:
            card = JobCard.from_job(job)
            reason = self._unrunnable(job)
            if reason is None:
                request = records.params_to_request(job.params, self.settings.data_dir)
                try:
                    self._handles[job.id] = await self.queue.submit(str(job.user_id), request, job_id=job.id)
                except QueueError as exc:
                    reason = user_message(exc)
                else:
                    await self._requeued(job.id)
                    self._requests[job.id] = request
                    log.info("job %s resumed after restart", job.id)
                    self.follow(card)
                    resumed += 1
                    continue
            failed += 1
            await self._finish(job.id, JobStatus.FAILED, error=reason)
            await self._presenter().show_failure(card, reason)
        return resumed, failed

    def _unrunnable(self, job: Job) -> str | None:
        if (job.attempts or 0) >= MAX_ATTEMPTS:
            return f"it was started {job.attempts} times and the bot stopped each time"
        init = (job.params or {}).get("init")
        if init and not (self.settings.data_dir / init).exists():
            return "its source image is gone from the bot's disk"
        return None

    async def _requeued(self, job_id: str) -> None:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is not None:
                job.status = JobStatus.QUEUED

    async def close(self) -> None:
        """Stop following jobs (the queue decides what happens to them)."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)


def _message_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"
