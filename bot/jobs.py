"""The job service: request → policy → database row → queue → progress → files → result message.

No Discord here. Messages go through a `Presenter` (the Discord one lives in `bot.presenter`), so
a job's life is the same whether it came from /imagine, a button or recovery after a restart.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot import job_records as records
from bot.job_runner import JobRunner
from bot.job_types import ButtonAction, JobCard, Presenter, Requester, UserInfo
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
from bot.store.models import Job, JobKind, JobStatus, utcnow
from bot.user_errors import BotError, UnknownJob, user_message
from engine.errors import QueueError
from engine.queue import JobQueue
from engine.types import GRID_SIZE, VARY_STRONG, VARY_SUBTLE, GenerationRequest, Mode

__all__ = [
    "MAX_ATTEMPTS",
    "ButtonAction",
    "JobCard",
    "JobService",
    "Presenter",
    "Requester",
    "UserInfo",
    "message_url",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""A job that was started this many times without finishing (it keeps killing the bot) is failed."""

_RESUME_WAITING = 1_000_000

_STRENGTH = {"Strong": VARY_STRONG, "Subtle": VARY_SUBTLE}


@dataclass(frozen=True, slots=True)
class _Parent:
    """The job a button was pressed on, read out of its session."""

    job_id: str
    cell: int
    prompt: str
    params: dict[str, Any]
    seeds: list[int]
    init: str | None
    """The pressed cell's image, relative to the data dir."""
    link: str | None
    """Its message, for the upscale's link back."""


def message_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """A jump link to a message."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


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
        self._clock = clock
        self.runner = JobRunner(db=db, queue=queue, settings=settings, clock=clock)
        self.runner.presenter = presenter
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

    async def _check_policy(self, who: Requester, text: str | None, new_jobs: int) -> Limits:
        """Refuse before anything is stored or queued (raises a `PolicyError`); the user's limits."""
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
        return limits

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
        limits = await self._check_policy(who, text, len(planned))
        cards: list[JobCard] = []
        try:
            for prompt, request in planned:
                cards.append(await self._create(who, JobKind.IMAGINE, prompt, request, limits=limits))
        except QueueError:
            # All or nothing: take back the jobs of this prompt that the queue already took.
            for card in cards:
                await self.queue.cancel(card.job_id)
                self.runner.forget(card.job_id)
                await self.runner.finish(card.job_id, JobStatus.CANCELLED, error="the queue was full")
            raise
        return cards

    async def press(
        self, who: Requester, action: ButtonAction, job_id: str, cell: int, *, remix_text: str | None = None
    ) -> JobCard:
        """A U/V/Vary/🔄 button: a new job from `job_id` (cell 1–4; 0 for a re-roll)."""
        parent = await self._parent(who, action, job_id, cell)
        prompt, request = parent.prompt, records.params_to_request(parent.params, self.settings.data_dir)
        if remix_text is not None:
            (prompt, request), *_ = await self._parse(who, remix_text)
        limits = await self._check_policy(who, remix_text, 1)
        kind, request, ui = self._child_request(action, parent, request)
        init = parent.init if kind is not JobKind.REROLL else parent.params.get("init")
        if request.mode is Mode.TEXT:
            init = None
        request = replace(request, init_image=self.settings.data_dir / init if init else None)
        cell_index = None if kind is JobKind.REROLL else parent.cell
        return await self._create(
            who,
            kind,
            prompt,
            request,
            limits=limits,
            parent_id=parent.job_id,
            parent_index=cell_index,
            init=init,
            ui=ui,
        )

    async def _parent(self, who: Requester, action: ButtonAction, job_id: str, cell: int) -> _Parent:
        """Load and check the job a button belongs to (owner-only setting, finished, image on disk)."""
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise UnknownJob(job_id)
            guild = await records.guild_settings(session, job.guild_id)
            owner_only = bool(guild and guild.buttons_owner_only)
            check_button_press(presser_id=who.user_id, owner_id=job.user_id, owner_only=owner_only)
            if job.status is not JobStatus.SUCCEEDED:
                raise BotError("That job has no images yet; wait for it to finish.")
            if action.is_variation and job.kind is JobKind.UPSCALE and job.parent_id:
                # Vary an upscale from its grid cell: same composition, at the size the model draws.
                cell, job = job.parent_index or 1, await session.get(Job, job.parent_id) or job
            init = await records.image_path(session, job.id, cell) if cell else None
            link = message_url(job.guild_id, job.channel_id, job.message_id) if job.message_id else None
            parent = _Parent(job.id, cell, job.prompt, dict(job.params), list(job.seeds or []), init, link)
        if action is not ButtonAction.REROLL and (
            init is None or not (self.settings.data_dir / init).exists()
        ):
            raise BotError("The image for that button is gone from the bot's disk, so I cannot use it.")
        return parent

    def _child_request(
        self, action: ButtonAction, parent: _Parent, request: GenerationRequest
    ) -> tuple[JobKind, GenerationRequest, dict[str, Any]]:
        """The engine request of a button press, from the parent's (or the remixed) request."""
        if action is ButtonAction.REROLL:  # the same job again with a new seed (a variation stays one)
            return JobKind.REROLL, replace(request, seed=_new_seed()), {}
        if action is ButtonAction.UPSCALE:
            cell = parent.cell
            seed = parent.seeds[cell - 1] if len(parent.seeds) >= cell else request.seed + cell - 1
            upscale = replace(request, mode=Mode.UPSCALE, count=1, seed=seed, strength=0.0)
            return JobKind.UPSCALE, upscale, {"source_url": parent.link} if parent.link else {}
        strength = _STRENGTH[action.variation]
        variation = replace(
            request, mode=Mode.VARIATION, count=GRID_SIZE, seed=_new_seed(), strength=strength
        )
        return JobKind.VARIATION, variation, {"variation": action.variation}

    async def _create(
        self,
        who: Requester,
        kind: JobKind,
        prompt: str,
        request: GenerationRequest,
        *,
        limits: Limits,
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
            # The queue enforces the member's limits too (an admin's rule may differ from the defaults).
            handle = await self.queue.submit(
                str(who.user_id),
                request,
                job_id=card.job_id,
                max_running=limits.max_running,
                max_waiting=limits.max_waiting,
            )
        except QueueError as exc:
            await self.runner.finish(card.job_id, JobStatus.FAILED, error=str(exc))
            raise
        self.runner.submitted(card.job_id, handle, request)
        return card

    # --- following a job ------------------------------------------------------------------

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
            await self.runner.finish(card.job_id, JobStatus.CANCELLED, error="cancelled")
            if not self.runner.following(card.job_id):
                await self.runner.show_failure(card, "cancelled")
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
                    # Accepted before the restart: no waiting limit may refuse it now.
                    handle = await self.queue.submit(
                        str(job.user_id), request, job_id=job.id, max_waiting=_RESUME_WAITING
                    )
                except QueueError as exc:
                    reason = user_message(exc)
                else:
                    await self._requeued(job.id)
                    self.runner.submitted(job.id, handle, request)
                    log.info("job %s resumed after restart", job.id)
                    self.follow(card)
                    resumed += 1
                    continue
            failed += 1
            await self.runner.finish(job.id, JobStatus.FAILED, error=reason)
            await self.runner.show_failure(card, reason)
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

    # --- following jobs (delegated to the runner) -------------------------------------------

    @property
    def presenter(self) -> Presenter | None:
        return self.runner.presenter

    @presenter.setter
    def presenter(self, presenter: Presenter | None) -> None:
        self.runner.presenter = presenter

    def follow(self, card: JobCard) -> None:
        """Show the job's life in its message (posted now if `card.message_id` is None), in the background."""
        self.runner.follow(card)

    async def set_message(self, job_id: str, message_id: int) -> None:
        await self.runner.set_message(job_id, message_id)

    async def wait_idle(self) -> None:
        """Wait until every followed job has ended and been shown (for tests and shutdown)."""
        await self.runner.wait_idle()

    async def close(self) -> None:
        """Stop following jobs (the queue decides what happens to them)."""
        await self.runner.close()
