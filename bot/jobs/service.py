"""The job service: request → policy → job row → queue → a ticket that is followed to the result.

No Discord here. A job's life is shown through a `Presenter` (Discord's in `bot.presenter`, the
terminal's in `bot.imagine_cli`), so it is the same whether it came from /imagine, a button, the
command line or recovery after a restart. Job rows change only through `bot.store.queries`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.errors import BotError, UnknownJob, user_message
from bot.fetch import ImageFetcher, off_loop
from bot.jobs._admission import UNLIMITED, admit, check_server_rules, member_limits
from bot.jobs._children import Parent, Planned, check_fits, edit_of, plan_child
from bot.jobs._follower import JobFollower
from bot.jobs.conversions import new_seed, params_to_request, request_to_params, to_generation_request
from bot.jobs.sources import keep_sources, load_sources, start_image
from bot.jobs.types import OPERATOR, ButtonAction, JobCard, JobTicket, Presenter, Requester, UserInfo
from bot.policy import (
    FlaggedImages,
    Limits,
    billed_images,
    check_button_press,
    check_engine_honours,
    day_window,
    flagged_images_get,
)
from bot.prompt import PromptLimits, parse, take_zoom
from bot.store import queries as q
from bot.store.db import Database
from bot.store.errors import JobStateError
from bot.store.models import Job, JobKind, JobStatus, utcnow
from engine.backend import Capabilities
from engine.edits import CANNOT_PAINT
from engine.errors import QueueError
from engine.queue import JobHandle, JobQueue
from engine.types import GenerationRequest, Mode

__all__ = ["JobService", "message_url"]

log = logging.getLogger("bot.jobs")


def message_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """A jump link to a message."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def _from_terminal(job: Job) -> bool:
    return job.user_id == OPERATOR.user_id and job.channel_id == OPERATOR.channel_id


def _allows_flagged_input(who: Requester, rule: FlaggedImages) -> bool:
    """A job may start from a flagged picture only where its flagged images could be posted."""
    return flagged_images_get(rule, age_restricted=who.age_restricted) is not FlaggedImages.BLOCK


class JobService:
    """Runs every job; built once by `bot.services`, started by whoever shows the jobs."""

    def __init__(
        self,
        *,
        db: Database,
        queue: JobQueue,
        config: Config,
        fetcher: ImageFetcher | None = None,
        safety_checked: bool = False,
        capabilities: Callable[[str | None], Capabilities] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`safety_checked`: the engine checks images, so progress previews (which it does not check)
        are shown only in age-restricted channels. `capabilities(alias)`: what the model a job asks
        for (a `--v`/`--niji` alias, None = the default) honours; a prompt giving anything else is
        refused before it is queued, and editing buttons are refused (and not shown) where it can't
        paint. Without it every engine is taken to honour everything."""
        self.db = db
        self.queue = queue
        self.config = config
        self.fetcher = fetcher or ImageFetcher.from_config(config)
        """Downloads the pictures of image prompts; closed with the service."""
        self.prompt_limits = PromptLimits.from_config(config)
        self.safety_checked = safety_checked
        self.capabilities: Callable[[str | None], Capabilities] = capabilities or (
            lambda alias: Capabilities("this engine")
        )
        """What the model of an alias honours and can do (Zoom Out, Pan, Make Square, Vary (Region))."""
        self._clock = clock
        self._follower: JobFollower | None = None
        self._following: dict[str, asyncio.Task[None]] = {}

    @property
    def presenter(self) -> Presenter | None:
        return self._follower.presenter if self._follower else None

    async def start(self, presenter: Presenter, *, recover: bool = True) -> tuple[int, int]:
        """Show jobs through `presenter` from now on; with `recover`, resume what a previous run left
        unfinished. Returns (resumed, failed) recovered jobs."""
        self._follower = JobFollower(
            db=self.db,
            config=self.config,
            presenter=presenter,
            clock=self._clock,
            previews_everywhere=not self.safety_checked,
            hosted=lambda request: self._billed(request) > 0,
        )
        return await self._recover() if recover else (0, 0)

    def _billed(self, request: GenerationRequest) -> int:
        return billed_images(request.mode, request.count, self.capabilities(request.model))

    # --- new jobs -------------------------------------------------------------------------

    async def imagine(self, who: Requester, text: str, *, images: Sequence[str] = ()) -> list[JobTicket]:
        """Parse, check, store and queue one job per request `text` expands to, all or none.

        `images` are links to attached pictures, which go before the prompt's own image links."""
        planned = [
            Planned(JobKind.IMAGINE, prompt, request, init=init)
            for prompt, request, init in await self._plan(who, text, images=images)
        ]
        return await self._submit(who, text, planned)

    async def press(
        self,
        who: Requester,
        action: ButtonAction,
        job_id: str,
        cell: int,
        *,
        remix_text: str | None = None,
        region: Sequence[int] = (),
    ) -> JobTicket:
        """A job button: a new job from `job_id`'s cell (1–4; 0 for a re-roll; an upscale's image is 1).

        `remix_text` is the prompt the member wrote in remix mode, in Vary (Region)'s box, or in Custom
        Zoom's (with its `--zoom`); `region` the cells (1–9) Vary (Region) repaints."""
        parent = await self._pressed(who, action, job_id, cell)
        edit = ""
        if action is ButtonAction.CUSTOM_ZOOM:
            remix_text, zoom = take_zoom(remix_text if remix_text is not None else "")
            edit = edit_of(action, zoom=zoom)
        elif action.is_edit:
            edit = edit_of(action, region=region)
        prompt, request = parent.prompt, params_to_request(parent.params, self.config.data_dir)
        request = replace(request, allow_flagged_input=parent.allow_flagged_input)  # the presser's channel
        start = parent.params.get("init") if request.mode is Mode.IMAGE else None
        if remix_text is not None:
            # The parent's pictures are on disk: a remix that keeps their links fetches nothing.
            known = self._known_pictures(parent)
            (prompt, request, start), *_ = await self._plan(who, remix_text, known=known)
        child = plan_child(
            action,
            parent,
            prompt,
            request,
            start,
            data_dir=self.config.data_dir,
            max_side=self.config.max_side,
            edit=edit,
        )
        (ticket,) = await self._submit(who, remix_text, [child])
        return ticket

    async def check_press(self, who: Requester, action: ButtonAction, job_id: str, cell: int) -> str:
        """Refuse now a press that first asks the member something (a modal, Vary (Region)'s select),
        as `press` would; else return the prompt to offer them."""
        return (await self._pressed(who, action, job_id, cell)).prompt

    async def _pressed(self, who: Requester, action: ButtonAction, job_id: str, cell: int) -> Parent:
        """The parent of a press, once the engine, the parent and `IMAGINE_MAX_SIDE` allow it."""
        parent = await self._parent(who, action, job_id, cell)
        if action.is_edit and not self.capabilities(parent.params.get("request", {}).get("model")).edits:
            raise BotError(CANNOT_PAINT)
        check_fits(action, parent.size, self.config.max_side)
        return parent

    def _known_pictures(self, parent: Parent) -> dict[str, str]:
        """The parent's image links and the SHA-256 of the picture each gave, as its job recorded them."""
        sources = parent.params.get("request", {}).get("sources") or []
        if not sources:
            return {}
        links = parse(parent.prompt, limits=self.prompt_limits)[0].image_prompts
        return dict(zip(links, sources, strict=False))

    async def _plan(
        self,
        who: Requester,
        text: str,
        *,
        images: Sequence[str] = (),
        known: Mapping[str, str] | None = None,
    ) -> list[tuple[str, GenerationRequest, str | None]]:
        """(canonical prompt, engine request, start image) per request `text` expands to, with the
        member's defaults; the pictures of image prompts are fetched (or read from disk, `known` maps
        a link to the SHA-256 of a kept picture) and made into start images first."""
        async with self.db.session(read_only=True) as session:
            prefs = await q.get_user_preferences(session, who.user_id)
            rules = await q.get_guild_rules(session, who.guild_id)
        defaults = dict(prefs.defaults or {})
        if prefs.model and prefs.model in self.config.model_aliases:
            defaults.setdefault("v", prefs.model)
        requests = parse(text, limits=self.prompt_limits, defaults=defaults, images=images)
        for r in requests:  # before any picture is fetched: the engine would not use it
            check_engine_honours(r, self.capabilities(r.model))
        allow_flagged = _allows_flagged_input(who, rules.flagged_images)
        if any(r.image_prompts for r in requests):
            check_server_rules(rules, who, text)  # again when the jobs are stored; now, before any fetch
        pictures = await self._pictures([url for r in requests for url in r.image_prompts], known or {})
        by_sha = dict(pictures.values())
        planned: list[tuple[str, GenerationRequest, str | None]] = []
        for r in requests:
            seed = r.seed if r.seed is not None else new_seed()
            if not r.image_prompts:
                request = to_generation_request(r, seed=seed)
                planned.append((str(r), replace(request, allow_flagged_input=allow_flagged), None))
                continue
            shas = [pictures[url][0] for url in r.image_prompts]
            start = await off_loop(start_image, self.config.data_dir, shas, by_sha, r.aspect_ratio)
            init = self.config.data_dir / start.path
            request = to_generation_request(r, seed=seed, init_image=init, sources=start.sources)
            planned.append((str(r), replace(request, allow_flagged_input=allow_flagged), start.path))
        return planned

    async def _pictures(
        self, urls: Sequence[str], known: Mapping[str, str]
    ) -> dict[str, tuple[str, Image.Image]]:
        """(SHA-256, picture) for each link: kept ones from disk, the others fetched (all at once)
        and kept. Raises `FetchError` for the first link that cannot be used; nothing is kept then."""
        wanted = list(dict.fromkeys(urls))
        found: dict[str, tuple[str, Image.Image]] = {}
        on_disk = [url for url in wanted if url in known]
        if on_disk:
            loaded = await off_loop(load_sources, self.config.data_dir, [known[u] for u in on_disk])
            if loaded is not None:
                found = {url: (known[url], loaded[known[url]]) for url in on_disk}
        missing = [url for url in wanted if url not in found]
        if missing:
            fetched = await self.fetcher.fetch_all(missing)
            kept = await off_loop(keep_sources, self.config.data_dir, fetched)
            found |= {picture.url: (picture.sha256, kept[picture.sha256]) for picture in fetched}
        return found

    async def _parent(self, who: Requester, action: ButtonAction, job_id: str, cell: int) -> Parent:
        """Load and check the job a button belongs to (owner-only rule, finished, image on disk)."""
        if self._follower is not None:  # a grid shown a moment ago may still be writing its files
            await self._follower.delivered(job_id)
        async with self.db.session(read_only=True) as session:
            job = await q.get_job(session, job_id)
            if job is None:
                raise UnknownJob(job_id)
            rules = await q.get_guild_rules(session, job.guild_id)
            check_button_press(
                presser_id=who.user_id, owner_id=job.user_id, owner_only=rules.buttons_owner_only
            )
            if job.status is JobStatus.MODERATED:
                raise BotError("That job's images were withheld by this server's moderation; none were kept.")
            if job.status is not JobStatus.SUCCEEDED:
                raise BotError("That job has no images yet; wait for it to finish.")
            # Vary an upscale (or an upscale of one) from its grid cell: same composition, at the size
            # the model draws.
            while action.is_variation and job.kind is JobKind.UPSCALE and job.parent_id:
                grid = await q.get_job(session, job.parent_id)
                if grid is None:
                    break
                cell, job = job.parent_index or 1, grid
            image = next((image for image in job.images if image.index == cell), None) if cell else None
            init = image.path if image is not None else None
            link = message_url(job.guild_id, job.channel_id, job.message_id) if job.message_id else None
            parent = Parent(
                job.id,
                cell,
                job.prompt,
                dict(job.params),
                list(job.seeds or []),
                init,
                link,
                size=(image.width, image.height) if image is not None else None,
                allow_flagged_input=_allows_flagged_input(who, rules.flagged_images),
            )
        if action is not ButtonAction.REROLL and (init is None or not (self.config.data_dir / init).exists()):
            raise BotError("The image for that button is gone from the bot's disk, so I cannot use it.")
        return parent

    async def _submit(self, who: Requester, text: str | None, planned: Sequence[Planned]) -> list[JobTicket]:
        """Check the policy and store the jobs in one transaction, then queue them, all or none."""
        async with self.db.session(urgent=True) as session:
            hosted = sum(self._billed(job.request) for job in planned)
            limits = await admit(
                session,
                who,
                text,
                len(planned),
                config=self.config,
                now=self._clock(),
                new_hosted_images=hosted,
            )
            cards = [JobCard.from_job(await self._create(session, who, job)) for job in planned]
        handles: list[JobHandle] = []
        try:
            for card, job in zip(cards, planned, strict=True):
                handles.append(await self._queue(who, card.job_id, job.request, limits))
        except QueueError as exc:
            await self._take_back(cards, handles, user_message(exc))
            raise
        for card in cards:
            log.info("job %s queued: %s by %s", card.job_id, card.kind.value, card.user_id)
        return [self._track(card, handle) for card, handle in zip(cards, handles, strict=True)]

    async def _create(self, session: AsyncSession, who: Requester, job: Planned) -> Job:
        ui = dict(job.ui or {})
        if who.age_restricted:  # kept with the job, so a result after a restart is judged the same way
            ui["age_restricted"] = True
        return await q.create_job(
            session,
            kind=job.kind,
            user_id=who.user_id,
            user_name=who.user_name,
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            prompt=job.prompt,
            seed=job.request.seed,
            params=request_to_params(job.request, init=job.init, **ui),
            model=job.request.model,
            parent_id=job.parent_id,
            parent_index=job.parent_index,
            now=self._clock(),
        )

    async def _queue(
        self, who: Requester, job_id: str, request: GenerationRequest, limits: Limits
    ) -> JobHandle:
        # The queue enforces the member's limits too (an admin's rule may differ from the defaults).
        return await self.queue.submit(
            str(who.user_id),
            request,
            job_id=job_id,
            max_running=limits.max_running,
            max_waiting=limits.max_waiting,
        )

    async def _take_back(self, cards: Sequence[JobCard], handles: Sequence[JobHandle], reason: str) -> None:
        """The queue refused job `len(handles)` of a prompt: it failed, and its siblings do not run."""
        for handle in handles:
            await handle.cancel()
        refused = cards[len(handles)].job_id
        async with self.db.session(urgent=True) as session:
            await q.mark_failed(session, refused, reason, now=self._clock())
            for card in cards:
                if card.job_id != refused:
                    why = f"another job of the same prompt was refused: {reason}"
                    await q.mark_cancelled(session, card.job_id, reason=why, now=self._clock())

    def _track(self, card: JobCard, handle: JobHandle) -> JobTicket:
        if self._follower is None:
            raise RuntimeError("JobService.start(presenter) must be called before jobs are submitted")
        ticket = JobTicket(card, handle)
        task = asyncio.create_task(self._follower.follow(ticket), name=f"job-{card.job_id}")
        self._following[card.job_id] = task
        task.add_done_callback(self._followed)
        return ticket

    def _followed(self, task: asyncio.Task[None]) -> None:
        job_id = task.get_name().removeprefix("job-")
        self._following.pop(job_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("following job %s failed; its owner may not have been told", job_id, exc_info=error)

    # --- around jobs ----------------------------------------------------------------------

    async def cancel(self, who: Requester, job_id: str | None = None) -> str:
        """Cancel the member's job `job_id` (default: their newest waiting or running one); return its id."""
        async with self.db.session(read_only=True) as session:
            if job_id is None:
                active = await q.active_jobs(session, who.user_id)
                if not active:
                    raise BotError("You have no waiting or running job to cancel.")
                job = active[-1]
            else:
                found = await q.get_job(session, job_id)
                if found is None or found.user_id != who.user_id:
                    raise UnknownJob(job_id)
                job = found
            card = JobCard.from_job(job)
        if job.status.finished:
            raise BotError(f"Job `{job.id}` already {job.status.value}; there is nothing to cancel.")
        if await self.queue.cancel(card.job_id):
            return card.job_id  # its follower records and shows the cancellation
        if card.job_id in self._following:
            raise BotError(f"Job `{card.job_id}` has just finished; it is too late to cancel it.")
        # A row no queue knows (left by a run that crashed and not resumed): end it here.
        async with self.db.session(urgent=True) as session:
            try:
                await q.mark_cancelled(session, card.job_id, now=self._clock())
            except JobStateError as exc:
                raise BotError(
                    f"Job `{card.job_id}` already {exc.status}; there is nothing to cancel."
                ) from exc
        await self._show_failure(card, "cancelled")
        return card.job_id

    async def info(self, who: Requester) -> UserInfo:
        """The member's limits, today's finished usage, and their jobs in the queue."""
        start, resets_at = day_window(self._clock())
        async with self.db.session(read_only=True) as session:
            rules = await q.quota_rules(session, who.guild_id)
            usage = await q.usage_since(session, who.user_id, start, guild_id=who.guild_id)
            jobs = await q.active_jobs(session, who.user_id)
        limits = member_limits(rules, who, self.config)
        active = tuple((job, self.queue.position(job.id), self.queue.estimate(job.id)) for job in jobs)
        return UserInfo(active=active, usage=usage, limits=limits, resets_at=resets_at)

    async def history(self, user_id: int, guild_id: int | None, limit: int = 10) -> list[Job]:
        async with self.db.session(read_only=True) as session:
            return await q.recent_jobs(session, user_id, limit=limit, guild_id=guild_id)

    async def get(self, job_id: str) -> Job:
        async with self.db.session(read_only=True) as session:
            job = await q.get_job(session, job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    async def reshow(self, who: Requester, job_id: str) -> tuple[JobCard, Path]:
        """A finished job's card and posted file, to post again where `who` asks (/show). Images the
        safety check flagged are shown only as the server's rule allows in that channel."""
        if self._follower is not None:
            await self._follower.delivered(job_id)
        async with self.db.session(read_only=True) as session:
            job = await q.get_job(session, job_id)
            if job is None:
                raise UnknownJob(job_id)
            rules = await q.get_guild_rules(session, who.guild_id)
        if job.status is JobStatus.MODERATED:
            raise BotError(f"Job `{job.id}` was withheld by this server's moderation; it kept no images.")
        if job.status is not JobStatus.SUCCEEDED or not job.grid_path:
            raise BotError(f"Job `{job.id}` is {job.status.value}; only finished jobs have images to show.")
        first = next((image for image in job.images if image.index == 1), None)
        card = replace(JobCard.from_job(job), image_size=(first.width, first.height) if first else None)
        if job.flagged:
            shown = flagged_images_get(rules.flagged_images, age_restricted=who.age_restricted)
            if shown is FlaggedImages.BLOCK:
                raise BotError(
                    f"The safety check flagged the images of job `{job.id}`; they are shown only in "
                    "age-restricted channels, and only where the server does not block flagged images."
                )
            card = replace(card, spoiler=shown is FlaggedImages.SPOILER)
        path = self.config.data_dir / job.grid_path
        if not path.exists():
            raise BotError(f"The images of job `{job.id}` are gone from the bot's disk.")
        return card, path

    async def wants_remix(self, user_id: int) -> bool:
        """Whether the member turned remix mode on (variations then ask for a new prompt first)."""
        async with self.db.session(read_only=True) as session:
            return (await q.get_user_preferences(session, user_id)).remix

    # --- recovery and shutdown --------------------------------------------------------------

    async def _recover(self) -> tuple[int, int]:
        """Queue again what a previous run left unfinished, or fail it with a notice: (resumed, failed)."""
        async with self.db.session() as session:
            recovery = await q.recover_unfinished(session, now=self._clock())
            resumable = []
            failed = list(recovery.failed)
            for job in recovery.requeued:
                if (reason := self._unrunnable(job)) is not None:
                    failed.append(await q.mark_failed(session, job.id, reason, now=self._clock()))
                else:
                    resumable.append(job)
        resumed = 0
        for job in resumable:
            card = JobCard.from_job(job)
            request = params_to_request(job.params, self.config.data_dir)
            try:
                # Accepted before the restart: no waiting limit may refuse it now.
                handle = await self.queue.submit(
                    str(job.user_id), request, job_id=job.id, max_waiting=UNLIMITED, attempts=job.attempts
                )
            except QueueError as exc:
                async with self.db.session() as session:
                    failed.append(await q.mark_failed(session, job.id, user_message(exc), now=self._clock()))
                continue
            log.info("job %s resumed after restart", job.id)
            self._track(card, handle).show_in(card.message_id)
            resumed += 1
        for job in failed:
            if not _from_terminal(job):  # the terminal that started it is gone: nobody to tell
                await self._show_failure(JobCard.from_job(job), job.error or "it could not be resumed")
        return resumed, len(failed)

    def _unrunnable(self, job: Job) -> str | None:
        if _from_terminal(job):
            return "it was started from the command line, which has ended"
        init = (job.params or {}).get("init")
        if init and not (self.config.data_dir / init).exists():
            return "its source image is gone from the bot's disk"
        return None

    async def _show_failure(self, card: JobCard, reason: str) -> None:
        if self.presenter is not None:
            await self.presenter.show_failure(card, reason)

    async def wait_idle(self) -> None:
        """Wait until every submitted job has ended and been shown (shutdown, tests)."""
        while self._following:
            # `wait`, not `gather`: a caller that stops waiting must not cancel the followers.
            await asyncio.wait(list(self._following.values()))

    async def close(self) -> None:
        """Stop following jobs; the queue decides what happens to them."""
        for task in self._following.values():
            task.cancel()
        await asyncio.gather(*self._following.values(), return_exceptions=True)
        await self.fetcher.close()
